"Shared pytest setup: every test runs with its own cache folder and an empty data root, never ../shared/data."
import os, sys
from pathlib import Path
import pytest

@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    "Point cache_dir and data_root at per-test temporary folders, so tests neither share caches nor see real data."
    monkeypatch.setenv('DRSN_TVL_CACHE_DIR', str(tmp_path / 'cache'))
    empty = tmp_path / 'no-data'; empty.mkdir()
    monkeypatch.setenv('DRSN_TVL_DATA_ROOT', str(empty))
    yield

@pytest.fixture
def venv_bin():
    "Folder of the running interpreter's console scripts (.venv/bin)."
    return Path(sys.executable).parent

@pytest.fixture(scope='session', autouse=True)
def _one_torch_thread():
    "Tiny models run faster on one intra-op thread; two OpenMP threads per process thrash a shared 2-core machine."
    import torch
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
