"""The main job killed during every stage, resumed each time, and two copies sharing one cache: same tables as a solo run.

    python benchmarks/bench_resume.py [--work DIR] [--preset quick] [--delay 3]

1. a solo run of the preset from an empty cache (the reference);
2. on a second empty cache: a run is started and killed (SIGKILL) `--delay` seconds after each stage begins in turn
   (victim training, generator training, attacks, unseen attacks, features, detectors, ...), then one run to the end;
3. on a third empty cache: two runs at once into two folders.
Every CSV of 2 and 3 is compared with 1 (drsn_tvl.experiment.compare_runs, timing columns aside); prints the seconds of
each part and exits 1 on any difference. On the idle 2-core machine the quick preset takes about 1.5 min per run, so
the whole script about 10 minutes. Caches and outputs go under --work (default: a temporary folder, removed).
"""
import argparse, os, signal, subprocess, sys, tempfile, threading, time
from pathlib import Path

from drsn_tvl.experiment import PROGRESS, STAGES, compare_runs

EXE = Path(sys.executable).with_name('drsn-tvl')


def start(out, cache, preset):
    env = dict(os.environ, DRSN_TVL_CACHE_DIR=str(cache), PYTHONUNBUFFERED='1')
    return subprocess.Popen([str(EXE), 'run', '--preset', preset, '--out', str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def run_until(out, cache, preset, stage, delay):
    "Start a run; SIGKILL it `delay` s after the progress line announcing `stage` as next. Returns True if it was killed."
    p = start(out, cache, preset)
    timer = None
    for line in p.stdout:
        if line.startswith(PROGRESS) and line.rstrip().endswith(f'next: {stage}') and timer is None:
            timer = threading.Timer(delay, lambda: p.poll() is None and p.send_signal(signal.SIGKILL)); timer.start()
    p.wait()
    if timer: timer.cancel()
    return p.returncode == -signal.SIGKILL


def check(ref, other, what) -> bool:
    st = compare_runs(ref, other)['status']
    bad = st[~st.isin(['identical', 'timing only'])]
    print(f"  {what}: {len(st) - len(bad)} of {len(st)} tables identical" + (f"; DIFFERENT: {bad.to_dict()}" if len(bad) else ''))
    return bad.empty


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--work', type=Path); ap.add_argument('--preset', default='quick'); ap.add_argument('--delay', type=float, default=3)
    a = ap.parse_args(argv)
    tmp = None if a.work else tempfile.TemporaryDirectory()
    w = a.work or Path(tmp.name)
    ok = True
    t = time.time()
    p = start(w / 'solo', w / 'cache-solo', a.preset); p.communicate()
    assert p.returncode == 0, 'the solo run failed'
    print(f"solo run: {time.time() - t:.0f} s")
    t, kills = time.time(), []
    for stage in STAGES[:6]:          # victim ... detectors: every stage that writes to the cache or trains
        if run_until(w / 'resumed', w / 'cache-resume', a.preset, stage, a.delay): kills.append(stage)
    p = start(w / 'resumed', w / 'cache-resume', a.preset); p.communicate()
    assert p.returncode == 0, 'the final resumed run failed'
    print(f"killed during {len(kills)} stages ({', '.join(kills)}), then resumed: {time.time() - t:.0f} s in all")
    ok &= check(w / 'solo', w / 'resumed', 'resumed vs solo')
    t = time.time()
    ps = [start(w / f'shared{i}', w / 'cache-shared', a.preset) for i in range(2)]
    for p in ps: p.communicate()
    assert all(p.returncode == 0 for p in ps), 'a shared-cache run failed'
    print(f"two runs at once on one cache: {time.time() - t:.0f} s")
    for i in range(2): ok &= check(w / 'solo', w / f'shared{i}', f'shared run {i} vs solo')
    if tmp: tmp.cleanup()
    return 0 if ok else 1


if __name__ == '__main__': sys.exit(main())
