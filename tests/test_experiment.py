"The experiment (06): parameter checks before heavy work, the CLI parser, and a tiny end-to-end run (tables, figures, report)."
import json, re, subprocess
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch

from drsn_tvl.experiment import PARAMS, experiment_params, check_params, run_experiment, run_name, _parse_kv, experiment_notebook, paper_table
from drsn_tvl.experiment import PRESETS


TINY = dict(img_size=32, max_images=16, max_images_strong=6, epochs=2, victim_epochs=1, gen_epochs=1, generators=['dcgan'],
            attacks=['fgsm', 'noise'], strong_attacks=['deepfool'], independent_attacks=['fgsm_ref'],
            backbones=['tf_efficientnet_lite0'], eps_sweep=[2 / 255, 8 / 255], detectors=['drsn_tvl', 'dnn'],
            baselines=['mahalanobis', 'dfeat'], adaptive_max_images=4, adaptive_steps=3, adaptive_eps=[8 / 255])

@pytest.mark.parametrize('key,value,valid', [
    ('dataset', 'chestxray', 'synthetic'), ('attacks', ['fgsm', 'pgdd'], 'pgd'), ('backbone', 'effnet', 'tf_efficientnet_lite0'),
    ('backbones', ['resnet18', 'resnet7'], 'resnet18'), ('detectors', ['drsn-tvl'], 'drsn_tvl'),
    ('generators', ['wgan-gp'], 'wgan'), ('strong_attacks', ['autoatack'], 'autoattack'), ('baselines', ['lid', 'kd'], 'kd_bu'),
    ('adaptive_kinds', ['fgsm'], 'pgd')])
def test_bad_names_fail_fast_listing_valid_values(key, value, valid):
    with pytest.raises(KeyError) as e: check_params(experiment_params('quick', **{key: value}))
    msg = str(e.value)
    assert key in msg and repr(value if isinstance(value, str) else value[-1]) in msg and valid in msg

def test_bad_preset_and_unknown_parameter():
    with pytest.raises(KeyError, match="presets: quick, cpu, paper"): experiment_params('cpu-fast')
    with pytest.raises(KeyError, match="unknown experiment parameter"): experiment_params('quick', learning_rate=1)
    with pytest.raises(ValueError, match="eps must lie"): check_params(experiment_params('quick', eps=0))
    with pytest.raises(ValueError, match="nothing to detect"): check_params(experiment_params('quick', attacks=[], generators=[]))

def test_data_root_without_the_data(tmp_path):
    with pytest.raises(FileNotFoundError) as e: check_params(experiment_params('cpu', dataset='eye-diseases', data_root=str(tmp_path)))
    assert 'eye-diseases' in str(e.value) and str(tmp_path) in str(e.value)

def test_presets_only_use_known_parameters():
    for name, pr in PRESETS.items():
        assert set(pr) <= set(PARAMS), name
        check_params(experiment_params(name))     # every registered name in a preset exists

def test_cli_values_are_typed():
    kv = _parse_kv([('eps', '4/255'), ('attacks', 'fgsm'), ('generators', 'wgan,gan'), ('seeds', '0,1'),
                    ('ds_kwargs', '{"flag": "retinamnist"}'), ('gen_max_images', 'none'), ('epochs', '3')])
    assert kv['eps'] == pytest.approx(4 / 255) and kv['attacks'] == ['fgsm'] and kv['generators'] == ['wgan', 'gan']
    assert kv['seeds'] == [0, 1] and kv['ds_kwargs'] == {'flag': 'retinamnist'} and kv['gen_max_images'] is None and kv['epochs'] == 3
    with pytest.raises(KeyError, match='unknown experiment parameter'): _parse_kv([('lr', '1')])
    with pytest.raises(ValueError, match='JSON object'): _parse_kv([('ds_kwargs', 'flag=retinamnist')])
    assert run_name(experiment_params('cpu', dataset='medmnist', ds_kwargs={'flag': 'retinamnist'})) == 'medmnist-retinamnist-cpu'

def test_notebook_parameters_cell_covers_every_parameter():
    "The shipped notebook's papermill parameters cell names every experiment parameter, so `-p KEY VALUE` reaches the run."
    nb = json.loads(experiment_notebook().read_text())
    cell = next(c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', []))
    names = {l.split('=')[0].strip() for l in ''.join(cell['source']).splitlines() if '=' in l and not l.startswith('#')}
    assert names == set(PARAMS)

def test_paper_tables_are_marked_as_theirs():
    for n in range(2, 16):
        assert 'paper, reported' in paper_table(n).index.name

def test_cli_rejects_bad_parameters_before_work(venv_bin, tmp_path):
    r = subprocess.run([str(venv_bin / 'drsn-tvl'), 'run', '--preset', 'quik', '--out', str(tmp_path / 'o')],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and 'quick' in r.stderr and not (tmp_path / 'o').exists()
    r = subprocess.run([str(venv_bin / 'drsn-tvl'), 'run', '-p', 'attacks', 'fgsm,pgdd', '--out', str(tmp_path / 'o')],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and 'pgdd' in r.stderr and 'fgsm_ref' in r.stderr

def test_tiny_run_end_to_end(tmp_path):
    "The whole pipeline on 16 images per split: every table, figure and the report are written, with sane numbers."
    out = tmp_path / 'run'
    tabs = run_experiment('quick', out_dir=str(out), show=False, **TINY)
    files = {p.name for p in out.iterdir()}
    for t in ('attack_stats', 'table_6_7', 'table_8', 'table_9', 'identify', 'table_2_3', 'table_10', 'table_11', 'eps_sweep', 'stage_seconds'):
        assert f'{t}.csv' in files and f'{t}.md' in files, t
    for f in ('examples', 'roc', 'confusion', 'confusion_identify', 'eps_sweep', 'adaptive'): assert f'{f}.png' in files, f
    st = pd.read_csv(out / 'table_beyond_static.csv', index_col=0)
    assert list(st.index) == ['drsn_tvl', 'mahalanobis', 'dfeat'] and 'all auroc' in st.columns
    ad = pd.read_csv(out / 'table_beyond_adaptive.csv')
    assert set(ad['attack']) == {'static pgd', 'adaptive pgd'} and set(ad['detector']) == {'drsn_tvl', 'mahalanobis', 'dfeat'}
    # evading both = fooling the victim and not being detected: evades_both = attack_success × (1 - detected), in %
    ok = ad['attack_success'] > 0
    assert (abs(ad['evades_both'][ok] - ad['attack_success'][ok] * (100 - ad['detected'][ok]) / 100) < 0.15).all(), ad
    assert (ad['evades_both'] <= ad['attack_success']).all() and (ad.loc[~ok, 'evades_both'].fillna(0) == 0).all()
    assert {'results.json', 'report.md', 'paper_table_6.csv'} <= files and not [f for f in files if '.tmp' in f]
    t67 = pd.read_csv(out / 'table_6_7.csv', index_col=0)
    assert list(t67.index) == ['drsn_tvl', 'dnn']
    n_test = int(re.search(r'test (\d+);', (out / 'table_6_7.md').read_text()).group(1))
    for d, r in t67.astype(float).iterrows():              # one seed: plain numbers, related as the metrics' definitions say
        assert abs(r['accuracy'] * n_test / 100 - round(r['accuracy'] * n_test / 100)) < 0.01, (d, r['accuracy'], n_test)
        p, se = r['precision'], r['sensitivity']
        assert abs(r['f1'] - (2 * p * se / (p + se) if p + se else 0)) < 0.02, (d, r)
    md = (out / 'table_6_7.md').read_text()
    assert 'Dataset synthetic (32 px)' in md and 'eps 2/255' in md and 'seeds [0]' in md and 'test' in md
    rep = (out / 'report.md').read_text()
    assert 'table_6_7' in rep and '![roc](roc.png)' in rep
    res = json.loads((out / 'results.json').read_text())
    assert res['params']['img_size'] == 32 and set(res['seconds']) >= {'victim', 'features', 'detectors'}
    sweep = tabs['eps_sweep'].reset_index()
    assert set(sweep['eps_255']) == {2.0, 8.0}

def test_attack_params_are_checked():
    with pytest.raises(KeyError, match='attack_params'): check_params(experiment_params('quick', attack_params={'bondary': {'steps': 5}}))
    with pytest.raises(TypeError, match='no parameter'): check_params(experiment_params('quick', attack_params={'boundary': {'stps': 5}}))
    assert check_params(experiment_params('cpu'))['attack_params']['boundary'] == {'steps': 100}
