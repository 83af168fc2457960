"""Data-parallel stages under torchrun, on the CPU with gloo: the adversarial-set builder split across 2 ranks gives the
bytes of a single-process run, resumes after an interruption, and the victim trains with fastai's DDP (`distrib_ctx`).
Also the `device` setting: cpu works, a bad value or an absent GPU is a clear error."""
import json, os, socket, subprocess, sys, textwrap
from pathlib import Path

import pytest
import torch

from drsn_tvl.attacks import build_adversarial_set
from drsn_tvl.core import resolve_device
from drsn_tvl.victim import train_victim

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(dataset='synthetic', backbone='test_efficientnet', pretrained=False, img_size=32, epochs=1, lr=3e-3,
             batch_size=16, n=48, progress=False)

# one rank of a run: build the set, record which batches this rank attacked, save what it returned
WORKER = textwrap.dedent('''
    import json, os, sys, torch
    torch.set_num_threads(1)
    import drsn_tvl.attacks as A
    from drsn_tvl.victim import load_victim
    victim_pt, cache, out = sys.argv[1:4]
    calls, real = [], A.run_attack
    A.run_attack = lambda *a, **k: calls.append([a[0], int(k['seed'])]) or real(*a, **k)
    s = A.build_adversarial_set(load_victim(victim_pt), 'train', cache_dir=cache, attacks=['fgsm', 'pgd', 'noise'],
                                params=dict(pgd=dict(steps=3)), chunk_size=3, batch_size=2, progress=False, device='cpu')
    rank = int(os.environ.get('RANK', 0))
    torch.save(dict(adv=s.adv, success=s.success, pred=s.pred, index=torch.from_numpy(s.index), clean=s.clean,
                    path=s.path), f'{out}/set{rank}.pt')
    open(f'{out}/calls{rank}.json', 'w').write(json.dumps(calls))
''')

VICTIM_WORKER = textwrap.dedent('''
    import json, os, sys, torch
    torch.set_num_threads(1)
    from drsn_tvl.victim import train_victim
    cache, out = sys.argv[1:3]
    v = train_victim(dataset='synthetic', backbone='test_efficientnet', pretrained=False, img_size=32, epochs=1, lr=3e-3,
                     batch_size=8, n=48, progress=False, cache_dir=cache, device='cpu')
    rank = int(os.environ.get('RANK', 0))
    torch.save(v.state_dict(), f'{out}/victim{rank}.pt')
    open(f'{out}/meta{rank}.json', 'w').write(json.dumps(v.meta))
''')


def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def run(script: Path, *args, ranks: int = 1, timeout: int = 240):
    "Run `script` as one process, or under torchrun with `ranks` CPU ranks (gloo); fail with its output."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
    for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'): env.pop(k, None)
    cmd = [sys.executable, str(script), *map(str, args)] if ranks == 1 else \
          [sys.executable, '-m', 'torch.distributed.run', '--nnodes', '1', '--nproc-per-node', str(ranks),
           '--master-addr', '127.0.0.1', '--master-port', str(free_port()), str(script), *map(str, args)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


@pytest.fixture(scope='module')
def victim_pt(tmp_path_factory):
    d = tmp_path_factory.mktemp('victim')
    v = train_victim(cache_dir=d, **SMALL)
    return d / 'victims' / f"{v.meta['key']}.pt"


def same_set(a: dict, b: dict):
    for k in ('index', 'clean'): assert torch.equal(a[k], b[k]), k
    assert list(a['adv']) == list(b['adv']) == ['fgsm', 'pgd', 'noise']
    for att in a['adv']:
        for k in ('adv', 'success', 'pred'):
            assert a[k][att].dtype == b[k][att].dtype and torch.equal(a[k][att], b[k][att]), (att, k)   # byte for byte


def test_attacks_two_ranks_equal_one_rank_and_resume(victim_pt, tmp_path):
    script = tmp_path / 'worker.py'; script.write_text(WORKER)
    one, two = tmp_path / 'one', tmp_path / 'two'
    for d in (one, two): d.mkdir()
    run(script, victim_pt, one / 'cache', one)
    run(script, victim_pt, two / 'cache', two, ranks=2)
    ref = torch.load(one / 'set0.pt', weights_only=False)
    r0, r1 = (torch.load(two / f'set{r}.pt', weights_only=False) for r in (0, 1))
    same_set(ref, r0); same_set(ref, r1)                          # every rank returns the merged set: the single run's bytes
    assert len(ref['index']) >= 6
    c_ref = json.loads((one / 'calls0.json').read_text())
    c0, c1 = (json.loads((two / f'calls{r}.json').read_text()) for r in (0, 1))
    assert c0 and c1 and not {tuple(c) for c in c0} & {tuple(c) for c in c1}   # the work was split, no batch twice
    assert sorted(map(tuple, c0 + c1)) == sorted(map(tuple, c_ref))
    # each rank wrote its chunks atomically, with checksum records, no leftovers; rank 0 wrote the stats
    folder = Path(r0['path'])
    chunks = sorted(folder.rglob('chunk_*.pt'))
    assert len(chunks) == 3 * -(-len(ref['index']) // 3) and all(Path(f'{c}.sha256').is_file() for c in chunks)
    assert (folder / 'stats.json').is_file() and not list(folder.rglob('.*tmp*'))
    # an interrupted 2-rank run: two chunks missing (one of each rank's), a stale temporary file of a killed writer
    lost = [p for p in chunks if p.parent.name.startswith('pgd-')][:2]
    for p in lost: p.unlink(); Path(f'{p}.sha256').unlink()
    (lost[0].parent / f'.{lost[0].name}.tmp999999').write_bytes(b'half a chunk')
    run(script, victim_pt, two / 'cache', two, ranks=2)
    c0, c1 = (json.loads((two / f'calls{r}.json').read_text()) for r in (0, 1))
    assert c0 and c1 and {a for a, _ in c0 + c1} == {'pgd'} and len(c0 + c1) == 4     # only the two lost chunks (2 batches each)
    for r in (0, 1): same_set(ref, torch.load(two / f'set{r}.pt', weights_only=False))
    assert all(p.is_file() for p in lost)


def test_victim_trains_data_parallel(tmp_path):
    pytest.importorskip('accelerate', reason="fastai's distrib_ctx needs accelerate")
    script = tmp_path / 'victim_worker.py'; script.write_text(VICTIM_WORKER)
    run(script, tmp_path / 'cache', tmp_path, ranks=2)
    s0, s1 = (torch.load(tmp_path / f'victim{r}.pt', weights_only=True) for r in (0, 1))
    for k in s0: assert torch.equal(s0[k], s1[k]), k                     # DDP: every rank ends with the same victim
    m0 = json.loads((tmp_path / 'meta0.json').read_text())
    m1 = json.loads((tmp_path / 'meta1.json').read_text())
    assert m0['config']['world_size'] == 2 and {**m0, 'train_seconds': 0} == {**m1, 'train_seconds': 0}
    files = sorted(p.name for p in (tmp_path / 'cache' / 'victims').iterdir())
    assert files == sorted([f"{m0['key']}.pt", f"{m0['key']}.pt.sha256", f"{m0['key']}.json", f"{m0['key']}.json.sha256"]), files
    saved = torch.load(tmp_path / 'cache' / 'victims' / f"{m0['key']}.pt", weights_only=True)
    for k in s0: assert torch.equal(saved[k], s0[k]), k                  # rank 0 wrote it
    run(script, tmp_path / 'cache', tmp_path, ranks=2)                    # a second job reads it from the cache
    assert json.loads((tmp_path / 'meta1.json').read_text())['train_seconds'] == m0['train_seconds']


def test_device_setting(victim_pt, tmp_path):
    assert resolve_device('cpu') == torch.device('cpu')
    with pytest.raises(ValueError, match=r"\[data\] device = 'bogus': expected one of auto, cpu, cuda, mps"):
        build_adversarial_set(torch.nn.Linear(1, 2), 'train', cache_dir=tmp_path, device='bogus', dataset='synthetic')
    with pytest.raises(ValueError, match=r"\[data\] device"):
        train_victim(cache_dir=tmp_path, device='gpu', **SMALL)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='no CUDA GPU'): resolve_device('cuda')
        with pytest.raises(ValueError, match=r"\[data\] device = cuda"):
            train_victim(cache_dir=tmp_path, device='cuda', **SMALL)
        assert resolve_device('auto').type in ('cpu', 'mps')
    os.environ['DRSN_TVL_DEVICE'] = 'bogus'
    try:
        from drsn_tvl.attacks import AttackConfig
        with pytest.raises(ValueError, match=r"\[data\] device"): AttackConfig.from_settings()
    finally: del os.environ['DRSN_TVL_DEVICE']
