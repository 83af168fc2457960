"End to end: the drsn-tvl console script and the prepare stage (the main job so far)."
import json, subprocess
from pathlib import Path
import pandas as pd
import pytest

from test_data import EXPECTED
import _fakes

def run(venv_bin, *args, env=None):
    return subprocess.run([str(venv_bin / 'drsn-tvl'), *args], capture_output=True, text=True, timeout=300)

def test_datasets_command_lists_registry(venv_bin):
    r = run(venv_bin, 'datasets')
    assert r.returncode == 0, r.stderr
    for name in EXPECTED: assert name in r.stdout
    assert 'embedded' in r.stdout and 'layout' in r.stdout and 'present' in r.stdout

def test_help_lists_commands(venv_bin):
    r = run(venv_bin, '--help')
    assert r.returncode == 0 and 'datasets' in r.stdout and 'prepare' in r.stdout

def test_prepare_synthetic(venv_bin, tmp_path):
    r = run(venv_bin, 'prepare', '--out', str(tmp_path / 'out'), '--img-size', '32')
    assert r.returncode == 0, r.stderr
    out = tmp_path / 'out'
    assert {'summary.csv', 'summary.md', 'summary.json', 'preview.png'} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if '.tmp' in p.name]
    df = pd.read_csv(out / 'summary.csv')
    assert set(df['split']) == {'train', 'valid', 'test'} and df['n'].sum() == 300
    assert (df['std_after'] > df['std_before']).all()             # CLAHE raised contrast
    js = json.loads((out / 'summary.json').read_text())
    assert js['dataset'] == 'synthetic' and js['img_size'] == 32 and js['settings']['lr'] == 1e-5
    assert (out / 'preview.png').read_bytes()[:4] == b'\x89PNG'

def test_prepare_real_layout(venv_bin, tmp_path):
    _fakes.eye_diseases(tmp_path / 'data' / 'eye-diseases', n=8)
    r = run(venv_bin, 'prepare', '--dataset', 'eye-diseases', '--data-root', str(tmp_path / 'data'), '--out', str(tmp_path / 'o'), '--img-size', '24')
    assert r.returncode == 0, r.stderr
    assert pd.read_csv(tmp_path / 'o' / 'summary.csv')['n'].sum() == 32

def test_cli_errors_are_clear(venv_bin, tmp_path):
    r = run(venv_bin, 'prepare', '--dataset', 'imagenet', '--out', str(tmp_path))
    assert r.returncode == 2 and 'unknown dataset' in r.stderr and 'eye-diseases' in r.stderr
    r = run(venv_bin, 'prepare', '--dataset', 'eye-diseases', '--data-root', str(tmp_path / 'nothing'), '--out', str(tmp_path))
    assert r.returncode == 2 and 'eye-diseases' in r.stderr and 'Expected layout' in r.stderr
    assert 'Traceback' not in r.stderr
