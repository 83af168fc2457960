"The experiment (06): parameter checks before heavy work, the CLI parser, and a tiny end-to-end run (tables, figures, report)."
import json, re, subprocess
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch

from drsn_tvl.experiment import PARAMS, experiment_params, check_params, run_experiment, run_name, _parse_kv, experiment_notebook, paper_table
from drsn_tvl.experiment import PRESETS, PROGRESS, STAGES
from drsn_tvl.model import DetectionPipeline


TINY = dict(img_size=32, max_images=16, max_images_strong=6, epochs=2, victim_epochs=1, gen_epochs=1, generators=['dcgan'],
            attacks=['fgsm', 'noise'], strong_attacks=['deepfool'], independent_attacks=['fgsm_ref'],
            backbones=['tf_efficientnet_lite0'], eps_sweep=[2 / 255, 8 / 255], detectors=['drsn_tvl', 'dnn'],
            baselines=['mahalanobis', 'dfeat'], adaptive_max_images=4, adaptive_steps=3, adaptive_eps=[8 / 255],
            adaptive_eval_images=4, strong_steps=2, strong_restarts=1, at_rounds=1, at_detectors=['logreg_at'],
            finetuned_backbones=['resnet18'])

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
    assert _parse_kv([('finetuned_backbones', '[]'), ('generators', '')]) == {'finetuned_backbones': [], 'generators': []}
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

def test_tiny_run_end_to_end(tmp_path, capsys):
    "The whole pipeline on 16 images per split: every table, figure, the best detector and the report are written, with sane numbers."
    out = tmp_path / 'run'
    tabs = run_experiment('quick', out_dir=str(out), show=False, **TINY)
    printed = capsys.readouterr()
    lines = [l for l in printed.out.splitlines() if l.startswith(PROGRESS)]
    for stage in STAGES: assert any(f'done: {stage}' in l for l in lines), (stage, lines)     # one line per stage, in order
    assert [int(re.search(r' (\d+)/13 stages', l).group(1)) for l in lines] == sorted(int(re.search(r' (\d+)/13 stages', l).group(1)) for l in lines)
    assert 'images attacked' in printed.out and re.search(r'\d+ tables written', printed.out)
    for src in ('backbone', 'victim'): assert f'detectors ({src} features): 2/2 fitted' in printed.out, src
    assert all(re.search(r'\d\d:\d\d elapsed, ~(\d\d:\d\d|\?) left', l) for l in lines), lines
    assert not re.search(r'warn', printed.out + printed.err, re.I), printed
    pipe = DetectionPipeline.load(out / 'detector.pt')       # the best detector, with the run's extractor and CLAHE setting
    src, best = re.search(r'features: (\w+) \(of .*picked with (\w+) by validation AUROC', (out / 'table_6_7.md').read_text()).groups()
    assert pipe.detector.name == best in ('drsn_tvl', 'dnn') and src in ('backbone', 'victim'), (src, best)
    assert pipe.img_size == 32 and pipe.clahe is False and pipe.threshold is not None
    side = pd.read_csv(out / 'table_6_7_sources.csv', index_col=0)     # Tables 6-8 on both sources, beside the paper's accuracy
    assert list(side.index) == ['drsn_tvl', 'dnn'] and {'backbone auroc', 'victim auroc', 'victim tpr_at_fpr'} <= set(side.columns)
    sc = pipe.score(torch.rand(3, 3, 32, 32))
    assert len(sc) == 3 and sc['p_adversarial'].between(0, 1).all()
    from drsn_tvl.baselines import OrPipeline
    orp = OrPipeline.load(out / 'detector_or_msp.pt')        # the OR rule of Tables 10-11, for screening
    assert orp.detector.name == pipe.detector.name and orp.member.name == 'msp'
    cap10 = (out / 'table_10.md').read_text()
    assert f"flags {100 * orp.valid_fpr:.1f} % of the valid clean rows" in cap10 and orp.valid_fpr <= 0.05
    x3 = torch.rand(3, 3, 32, 32); so = orp.score(x3)
    assert list(so['flagged']) == list((so['p_adversarial'] > orp.thresholds[0]) | (so['p_msp'] > orp.thresholds[1]))
    np.testing.assert_allclose(so['p_adversarial'], pipe.score(x3)['p_adversarial'], atol=1e-9)
    files = {p.name for p in out.iterdir()}
    for t in ('attack_stats', 'table_6_7', 'table_8', 'table_9', 'identify', 'table_2_3', 'table_10', 'table_11', 'eps_sweep', 'stage_seconds'):
        assert f'{t}.csv' in files and f'{t}.md' in files, t
    for f in ('examples', 'roc', 'confusion', 'confusion_identify', 'eps_sweep', 'adaptive'): assert f'{f}.png' in files, f
    st = pd.read_csv(out / 'table_beyond_static.csv', index_col=0)
    mine = [best] + (['drsn_tvl'] if best != 'drsn_tvl' else [])                  # the best, and the paper's detector beside it
    assert list(st.index) == mine + ['mahalanobis', 'dfeat'] and 'all auroc' in st.columns
    ad = pd.read_csv(out / 'table_beyond_adaptive.csv')
    assert set(ad['attack']) == {'static pgd', 'adaptive pgd'} and set(ad['detector']) == {*mine, 'mahalanobis', 'dfeat'}
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
    head = rep.split('\nParameters: ')[0]                    # the report opens with the one-screen summary
    assert head.startswith('# drsn_tvl experiment: synthetic') and '## At a glance' in head and len(head.splitlines()) < 30, head
    assert head.split('## At a glance')[1].strip() == (out / 'summary.md').read_text().split('## At a glance')[1].strip()
    acc = pd.read_csv(out / 'table_6_7.csv', index_col=0).loc['drsn_tvl', 'accuracy']
    assert re.search(rf"\| drsn_tvl +\| +{acc:g} +\|.*\| 98\.45 / 98\.73 ", head), head      # ours beside the paper's
    assert 'the row shown is `dfeat`' in head and 'adaptive pgd at 8/255' in head and 'detector.pt IMAGES' in head
    res = json.loads((out / 'results.json').read_text())
    assert res['params']['img_size'] == 32 and set(res['seconds']) >= {'victim', 'features', 'detectors'}
    sweep = tabs['eps_sweep'].reset_index()
    assert set(sweep['eps_255']) == {2.0, 8.0}
    for c in ('auroc', 'logreg auroc'):                       # the sweep gives AUROC beside the TPR (the 1/255 target is an AUROC)
        assert sweep[c].between(0, 1).all(), sweep
    # the strong detector-aware evaluation: the picked, the paper's and the adversarially trained detector, the robust victim's bound
    sg = pd.read_csv(out / 'table_beyond_strong.csv')
    assert {'logreg_at', 'drsn_tvl', 'robust victim (PGD-AT, eps/2)'} <= set(sg['detector']), sg['detector'].unique()
    assert {'static pgd', 'adaptive joint', 'adaptive orthogonal', 'adaptive strongest'} <= set(sg['attack']), sg['attack'].unique()
    rows = sg[sg['attack'] != 'static pgd'].dropna(subset=['evades_both'])
    assert (rows['evades_both_lo'] <= rows['evades_both']).all() and (rows['evades_both'] <= rows['evades_both_hi']).all(), rows
    assert (rows['evades_both'] <= rows['attack_success'] + 1e-9).all() and rows['attack_success'].between(0, 100).all(), rows
    mk = pd.read_csv(out / 'table_beyond_masking.csv', index_col=0)
    assert list(mk.index) == sorted(mk.index) and mk['attack_success'].between(0, 100).all(), mk
    assert 'beyond_strong.png' in files
    # the logistic-regression baseline stands beside every detection number: Tables 2-3, 10-11 and the eps sweep
    assert 'logreg detected' in sweep.columns and sweep['logreg detected'].between(0, 1).all(), sweep
    t23 = pd.read_csv(out / 'table_2_3.csv', index_col=0)
    if 'kept train' in t23:       # a one-epoch generator may fool no image of a split: then its row is that note alone
        assert {'logreg auroc', 'logreg tpr_at_fpr', 'kept test'} <= set(t23.columns), t23.columns
        assert (t23['kept train'] < 200).all() and t23['note'].str.contains('kept generator examples in train').all(), t23
    else: assert t23['note'].str.contains('no kept adversarial example').all(), t23
    for t in ('table_10', 'table_11'):
        u = pd.read_csv(out / f'{t}.csv', index_col=0)
        assert {'auroc', 'tpr_at_fpr', 'logreg auroc', 'logreg tpr_at_fpr'} <= set(u.columns), (t, u.columns)
        # the victim's softmax gap and the OR rule beside the detector, the pair's budget set on valid and said in the caption
        cols = ['msp tpr_at_fpr', 'or_msp tpr_at_fpr', 'or_msp clean_fpr']
        assert set(cols) <= set(u.columns) and u[cols].dropna().apply(lambda c: c.between(0, 100)).all().all(), u
        fpr = float(re.search(r'the pair flags ([\d.]+) % of the valid clean rows', (out / f'{t}.md').read_text()).group(1))
        assert 0 <= fpr <= 5.0, fpr
    # Tables 4-5: a frozen backbone with its shipped weights, and a comparison architecture trained on the dataset
    t45 = pd.read_csv(out / 'table_4_5.csv', index_col=0)
    assert list(t45.index) == ['tf_efficientnet_lite0', 'resnet18 (fine-tuned)'], t45
    assert t45.loc['tf_efficientnet_lite0', 'weights'].startswith('frozen, package:'), t45['weights']
    assert t45.loc['resnet18 (fine-tuned)', 'weights'].startswith('trained on synthetic (1 epochs'), t45['weights']

def test_attack_params_are_checked():
    with pytest.raises(KeyError, match='attack_params'): check_params(experiment_params('quick', attack_params={'bondary': {'steps': 5}}))
    with pytest.raises(TypeError, match='no parameter'): check_params(experiment_params('quick', attack_params={'boundary': {'stps': 5}}))
    assert check_params(experiment_params('cpu'))['attack_params']['boundary'] == {'steps': 100}


# ---- `drsn-tvl run` through papermill: what the user sees on the terminal and in the executed notebook
def _cli_kv(params: dict) -> list:
    out = []
    for k, v in params.items():
        v = ','.join(f'{x * 255:g}/255' if isinstance(x, float) else str(x) for x in v) if isinstance(v, list) else str(v)
        out += ['-p', k, v]
    return out

@pytest.fixture(scope='module')
def cli_run(tmp_path_factory):
    "One tiny `drsn-tvl run` (papermill) in a subprocess, with its own cache and an empty data root."
    import os, sys
    tmp = tmp_path_factory.mktemp('cli_run'); (tmp / 'no-data').mkdir()
    env = dict(os.environ, DRSN_TVL_CACHE_DIR=str(tmp / 'cache'), DRSN_TVL_DATA_ROOT=str(tmp / 'no-data'), OMP_NUM_THREADS='1')
    tiny = {**TINY, 'eps_sweep': [2 / 255, 8 / 255], 'adaptive_eps': [8 / 255]}
    r = subprocess.run([str(Path(sys.executable).parent / 'drsn-tvl'), 'run', '--out', str(tmp / 'run')] + _cli_kv(tiny),
                       capture_output=True, text=True, timeout=900, env=env)
    return r, tmp / 'run'

def test_cli_run_shows_progress_saves_detector_and_opens_with_summary(cli_run):
    r, out = cli_run
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [l for l in r.stdout.splitlines() if l.startswith(PROGRESS)]          # streamed from the kernel while it runs
    for stage in STAGES: assert any(f'done: {stage}' in l for l in lines), (stage, r.stdout)
    assert '13/13 stages' in lines[-1] and 'finished' in lines[-1] and 'elapsed' in lines[-1]
    assert 'without encryption' not in r.stderr and 'IPKernelApp' not in r.stderr, r.stderr
    assert not re.search(r'warn', r.stdout, re.I), r.stdout
    nb = json.loads((out / 'experiment.ipynb').read_text())
    first = ''.join(nb['cells'][0]['source'])
    assert nb['cells'][0]['cell_type'] == 'markdown' and first.startswith('## At a glance') and 'drsn_tvl' in first
    streams = [o for c in nb['cells'] for o in c.get('outputs', []) if o.get('output_type') == 'stream']
    assert any(PROGRESS in ''.join(o['text']) and 'done: eps sweep' in ''.join(o['text']) for o in streams if o['name'] == 'stdout')
    assert not [o for o in streams if o['name'] == 'stderr'], [''.join(o['text'])[:300] for o in streams if o['name'] == 'stderr']
    assert DetectionPipeline.load(out / 'detector.pt').detector.name in ('drsn_tvl', 'dnn')

def test_cli_run_prints_no_library_warnings(cli_run):
    r, _ = cli_run
    assert not re.search(r'warn', r.stderr, re.I), r.stderr
