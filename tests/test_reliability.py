"""Untrusted files stay refused: a saved detector or a cache entry carrying a pickle that would run code is not loaded,
and the error names the file."""
import os

import numpy as np
import pytest
import torch

from drsn_tvl.core import UnsafeFile, safe_load
from drsn_tvl.data import DataError, get_dataset, load_arrays
from drsn_tvl.model import DetectionPipeline, load_detector
from drsn_tvl.victim import load_victim
from drsn_tvl.wgan import read_checkpoint


class Payload:
    "Unpickling this object creates the folder `marker`: the code an attacker's file would run."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (os.mkdir, (self.marker,))


@pytest.fixture
def marker(tmp_path): return tmp_path / 'payload-ran'


def test_detector_file_with_code_is_refused(tmp_path, marker):
    f = tmp_path / 'detector.pt'
    torch.save({'format': 'drsn_tvl.detector', 'config': '{}', 'state': Payload(marker)}, f)
    for load in (load_detector, DetectionPipeline.load):
        with pytest.raises(UnsafeFile, match=f'{f}: refused to load this detector'): load(f)
    from drsn_tvl.cli import main
    assert main(['detect', '--detector', str(f), str(tmp_path)]) == 2
    assert not marker.exists()


def test_cache_entries_with_code_are_refused(tmp_path, marker):
    import json
    (tmp_path / 'v.json').write_text(json.dumps(dict(config=dict(backbone='test_efficientnet', dropout=0.2), n_classes=2, weights_source='x')))
    torch.save({'head.1.weight': Payload(marker)}, tmp_path / 'v.pt')
    with pytest.raises(UnsafeFile, match='refused to load this victim'): load_victim(tmp_path / 'v.pt')
    (tmp_path / 'gen').mkdir(); torch.save({'G': Payload(marker)}, tmp_path / 'gen' / 'state.pt')
    with pytest.raises(UnsafeFile, match='generator checkpoint'): read_checkpoint(tmp_path / 'gen')
    with pytest.raises(UnsafeFile, match='chunk'): safe_load(_chunk(tmp_path, marker), 'adversarial-set cache chunk')
    assert not marker.exists()


def _chunk(d, marker):
    p = d / 'chunk_00000.pt'; torch.save({'adv': torch.zeros(1), 'success': Payload(marker)}, p); return p


def test_pixel_cache_with_an_object_array_is_refused(tmp_path, marker):
    from drsn_tvl.core import write_checked
    ds = get_dataset('synthetic', 'valid', img_size=16)
    x, y = load_arrays(ds, cache_dir=tmp_path, progress=False)                 # writes the cache entry and its checksum record
    entry = next(tmp_path.rglob('*.npz'))
    write_checked(entry, lambda p: np.savez(open(p, 'wb'), x=np.array([Payload(marker)], dtype=object), y=y))   # a forged entry, record too
    with pytest.raises(DataError, match=f'{entry}: an unsafe or unreadable pixel-cache entry'):
        load_arrays(ds, cache_dir=tmp_path, progress=False)
    assert not marker.exists()


def test_damaged_cache_entries_are_reported_and_recomputed(tmp_path):
    "A torn or altered entry (pixel cache, adversarial chunk) is never used: a warning names it, it is recomputed, the result is unchanged."
    ds = get_dataset('synthetic', 'valid', img_size=16)
    x, _ = load_arrays(ds, cache_dir=tmp_path, progress=False)
    entry = next(tmp_path.rglob('*.npz'))
    entry.write_bytes(entry.read_bytes()[:100])                               # a torn write
    with pytest.warns(UserWarning, match=f'{entry}: this pixel-cache entry is damaged.*Recomputing'):
        x2, _ = load_arrays(ds, cache_dir=tmp_path, progress=False)
    assert np.array_equal(x2, x)
    v = _tiny_victim(tmp_path)
    from drsn_tvl.attacks import build_adversarial_set
    kw = dict(attacks=['fgsm'], n_max=8, cache_dir=tmp_path, progress=False, img_size=32, n=48)
    a = build_adversarial_set(v, 'test', **kw)
    chunk = next(tmp_path.rglob('chunk_00000.pt'))
    raw = bytearray(chunk.read_bytes()); raw[-40] ^= 0xFF; chunk.write_bytes(bytes(raw))     # one flipped byte
    with pytest.warns(UserWarning, match=f'{chunk}: this adversarial-set cache chunk is damaged: its SHA-256'):
        b = build_adversarial_set(v, 'test', **kw)
    assert torch.equal(a.adv['fgsm'], b.adv['fgsm'])


def _tiny_victim(cache):
    from drsn_tvl.victim import train_victim
    return train_victim('synthetic', backbone='test_efficientnet', pretrained=False, img_size=32, epochs=1, batch_size=16,
                        cache_dir=cache, progress=False, n=48)


def test_damaged_victim_is_retrained_and_stale_keys(tmp_path, monkeypatch):
    "The victim's cache entry is checked on read; its key follows what changes the result, not where outputs go or progress bars."
    from drsn_tvl.victim import train_victim
    v = _tiny_victim(tmp_path)
    js = next((tmp_path / 'victims').glob('*.json'))
    js.write_text(js.read_text()[:-5])                                         # truncated meta
    with pytest.warns(UserWarning, match=f'{js}: this victim cache entry is damaged.*Retraining'):
        v2 = _tiny_victim(tmp_path)
    for k, t in v.state_dict().items(): assert torch.allclose(v2.state_dict()[k], t, atol=1e-6), k
    kw = dict(backbone='test_efficientnet', pretrained=False, img_size=32, epochs=1, batch_size=16, cache_dir=tmp_path, n=48)
    assert train_victim('synthetic', progress=True, **kw).meta['key'] == v.meta['key']                   # progress: not in the key
    monkeypatch.setenv('DRSN_TVL_OUT_DIR', str(tmp_path / 'elsewhere'))
    assert train_victim('synthetic', progress=False, **kw).meta['key'] == v.meta['key']                  # out_dir: not in the key
    assert len(list((tmp_path / 'victims').glob('*.pt'))) == 1
    assert train_victim('synthetic', progress=False, **{**kw, 'epochs': 2}).meta['key'] != v.meta['key']  # epochs: in the key


def test_cache_entry_shared_by_two_processes(tmp_path):
    "Two processes asking for one entry at once: one computes it (under the lock), the other waits and reads it; no half-written file is read."
    import subprocess, sys
    prog = ("import sys, time, torch; from pathlib import Path; from drsn_tvl.core import cached_entry, safe_load\n"
            "d = Path(sys.argv[1])\n"
            "def make():\n    (d / f'computed-{sys.argv[2]}').touch(); time.sleep(2); return {'w': torch.arange(1000.)}\n"
            "v = cached_entry(d / 'e.pt', make, lambda v, p: torch.save(v, p), lambda p: safe_load(p, 'entry'))\n"
            "assert torch.equal(v['w'], torch.arange(1000.)); print('ok')\n")
    ps = [subprocess.Popen([sys.executable, '-c', prog, str(tmp_path), str(i)], stdout=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in ps]
    assert [p.returncode for p in ps] == [0, 0] and all('ok' in o for o in outs)
    assert len(list(tmp_path.glob('computed-*'))) == 1                          # computed once
