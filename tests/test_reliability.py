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
    ds = get_dataset('synthetic', 'valid', img_size=16)
    x, y = load_arrays(ds, cache_dir=tmp_path, progress=False)                 # writes the cache entry
    entry = next(tmp_path.rglob('*.npz'))
    np.savez(entry, x=np.array([Payload(marker)], dtype=object), y=y)           # an attacker's replacement
    with pytest.raises(DataError, match=f'{entry}: a damaged or unsafe pixel-cache entry'):
        load_arrays(ds, cache_dir=tmp_path, progress=False)
    entry.write_bytes(b'PK\x03\x04 truncated')                                  # a torn write
    with pytest.raises(DataError, match='delete the file'): load_arrays(ds, cache_dir=tmp_path, progress=False)
    assert not marker.exists()
    entry.unlink(); x2, _ = load_arrays(ds, cache_dir=tmp_path, progress=False)  # recomputed once cleared
    assert np.array_equal(x2, x)
