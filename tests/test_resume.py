"""An interrupted run resumes to the same tables, and two runs sharing one cache give the tables of a solo run.

A tiny experiment (16 images per split, two attacks, one generator) is killed with SIGKILL at a stage boundary, then
run again on the same cache; two more start at once on a second cache. Every CSV must match byte for byte, timing
columns aside (`drsn_tvl.experiment.compare_runs`). `benchmarks/bench_resume.py` does the same with the quick preset,
killed during every stage."""
import json, os, signal, subprocess, sys

import pytest

from drsn_tvl.experiment import compare_runs

TINY = dict(img_size=32, max_images=16, max_images_strong=6, epochs=2, victim_epochs=1, gen_epochs=2, generators=['dcgan'],
            attacks=['fgsm', 'pgd'], strong_attacks=['deepfool'], independent_attacks=[], backbones=['tf_efficientnet_lite0'],
            eps_sweep=[8 / 255], detectors=['drsn_tvl'], baselines=['dfeat'], adaptive_max_images=4, adaptive_steps=3,
            adaptive_eps=[8 / 255])

PROG = ("import json, sys; from drsn_tvl.experiment import run_experiment\n"
        "run_experiment('quick', out_dir=sys.argv[1], show=False, **json.loads(sys.argv[2]))\n")


def _start(out, cache):
    env = dict(os.environ, DRSN_TVL_CACHE_DIR=str(cache), OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    return subprocess.Popen([sys.executable, '-c', PROG, str(out), json.dumps(TINY)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def _kill_after(p, marker: str) -> str:
    "Read the run's output until a line holds `marker`, then SIGKILL it (a crash: no clean-up runs)."
    seen = []
    for line in p.stdout:
        seen.append(line)
        if marker in line: p.send_signal(signal.SIGKILL); break
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL, ''.join(seen)[-3000:]
    return ''.join(seen)


def _finish(p) -> str:
    out, _ = p.communicate(timeout=900)
    assert p.returncode == 0, out[-3000:]
    return out


def _same(a, b):
    st = compare_runs(a, b)['status']
    bad = st[~st.isin(['identical', 'timing only'])]
    assert len(st) > 10 and bad.empty, bad.to_dict()


@pytest.fixture(scope='module')
def shared(tmp_path_factory):
    "Two runs started at once on one empty cache."
    d = tmp_path_factory.mktemp('shared')
    ps = [_start(d / f'out{i}', d / 'cache') for i in range(2)]
    for p in ps: _finish(p)
    return d


def test_two_runs_on_one_cache_agree(shared):
    _same(shared / 'out0', shared / 'out1')


def test_killed_runs_resume_to_the_same_tables(shared, tmp_path):
    "Killed once the generators are trained (attacks under way), and again after the features: the third run's tables are a solo run's."
    out, cache = tmp_path / 'out', tmp_path / 'cache'
    _kill_after(_start(out, cache), 'done: generator training')
    _kill_after(_start(out, cache), 'done: features')
    log = _finish(_start(out, cache))
    assert 'done: eps sweep' in log
    _same(shared / 'out0', out)
