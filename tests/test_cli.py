"The drsn-tvl command line: the parser built from the command signatures, error handling, the prepare stage and detect end to end."
import argparse, json, subprocess, sys
from pathlib import Path
from typing import Annotated
import numpy as np
import pandas as pd
import pytest
import torch

from drsn_tvl.cli import CACHE_STAGES, COMMANDS, build_parser, cli_args, command, main
from drsn_tvl.data import SPLITS, read_image, resize
from drsn_tvl.model import DetectionPipeline
from drsn_tvl.victim import VICTIM_RECIPES
from test_data import EXPECTED
import _fakes

# Every option of every command as it was spelled before the options came from signatures: flag -> (dest, kind, default).
# kind: a type (the value is converted with it), 'flag' (store_true), a tuple (choices) or 'kv' (-p KEY VALUE, repeatable).
# An option renamed, dropped or added by mistake, a changed default or a lost type fails test_flags_dests_defaults.
DS, ROOTS = {'--dataset': ('dataset', str, None)}, {'--data-root': ('data_root', str, None), '--root': ('root', str, None)}
DEV = {'--device': ('device', ('auto', 'cpu', 'cuda', 'mps'), None)}     # every heavy stage's device, default: the setting
OPTIONS = {
    'datasets': {'--data-root': ('data_root', str, None)},
    'prepare': {**DS, '--out': ('out_dir', str, None), **ROOTS, '--img-size': ('img_size', int, None)},
    'attacks': {},
    'victim': {**DS, '--backbone': ('backbone', str, None), '--preset': ('preset', tuple(sorted(VICTIM_RECIPES)), None),
               '--img-size': ('img_size', int, None), '--epochs': ('epochs', int, None), '--lr': ('lr', float, None),
               '--weights': ('weights', str, None), **ROOTS, '--force': ('force', 'flag', False), **DEV},
    'adversarial': {**DS, '--split': ('split', SPLITS, 'test'), '--attacks': ('attacks', str, None), '--backbone': ('backbone', str, None),
                    '--img-size': ('img_size', int, None), '--epochs': ('epochs', int, None), '--n-max': ('n_max', int, None),
                    '--all': ('keep_all', 'flag', False), **ROOTS, **DEV},
    'backbones': {'--img-size': ('img_size', int, 224), '--layers': ('layers', 'flag', False)},
    'features': {**DS, '--split': ('split', SPLITS, 'train'), '--img-size': ('img_size', int, None), '--clahe': ('clahe', 'flag', False),
                 '--backbone': ('backbone', str, None), '--layer': ('layer', str, None), '--pool': ('pool', int, None),
                 '--size': ('size', int, None), '--batch-size': ('batch_size', int, None), '--shard-size': ('shard_size', int, None),
                 '--num-workers': ('num_workers', int, None), '--weights': ('weights', str, None),
                 '--random-weights': ('random_weights', 'flag', False), '--out': ('out', str, None),
                 '--overwrite': ('overwrite', 'flag', False), '--verify': ('verify', 'flag', False), **DEV},
    'detectors': {'--in-shape': ('in_shape', str, '2560,7,7')},
    'cache': {'--cache-dir': ('cache_dir', str, None), '--stage': ('stage', str, None), '--clear': ('clear', str, None)},
    'run': {'--dataset': ('dataset', str, 'synthetic'), '--data-root': ('data_root', str, None), '--root': ('root', str, None),
            '--preset': ('preset', str, 'quick'), '--out': ('out_dir', str, None), '-p': ('kv', 'kv', None)},
    'detect': {'--detector': ('detector', str, None), '--out': ('out', str, 'detections.csv'), '--weights': ('weights', str, None),
               '--batch-size': ('batch_size', int, 64)},
}
# what a command cannot be parsed without (argv, and the values it sets): detect's --detector and its IMAGES
REQUIRED = {'detect': (['--detector', 'det.pt', 'a.png', 'scans'], {'detector': 'det.pt', 'images': ['a.png', 'scans']})}

def parse(*argv): return build_parser().parse_args(list(argv))

def help_of(capsys, *argv):
    with pytest.raises(SystemExit) as e: main([*argv, '--help'])
    assert e.value.code == 0
    return capsys.readouterr().out

# ---- the signature-built parser

def test_every_command_registered():
    assert sorted(COMMANDS) == sorted(OPTIONS)

@pytest.mark.parametrize('cmd', sorted(OPTIONS))
def test_flags_dests_defaults(cmd):
    opts, (need, given) = OPTIONS[cmd], REQUIRED.get(cmd, ([], {}))
    assert vars(parse(cmd, *need)) == {'cmd': cmd, **{dest: d for dest, _, d in opts.values()}, **given}   # exactly these dests and defaults
    for flag, (dest, kind, _) in opts.items():
        if kind == 'flag': argv, want = [flag], True
        elif kind == 'kv': argv, want = [flag, 'epochs', '3', flag, 'seeds', '0,1'], [['epochs', '3'], ['seeds', '0,1']]
        elif isinstance(kind, tuple): argv, want = [flag, kind[-1]], kind[-1]
        elif kind is str: argv, want = [flag, 'x1'], 'x1'
        else: argv, want = [flag, '7'], kind('7')
        got = getattr(parse(cmd, *need, *argv), dest)
        assert got == want and type(got) is type(want), (cmd, flag, got)

@pytest.mark.parametrize('cmd,argv,msg', [
    ('backbones', ['--img-size', 'big'], "invalid int value: 'big'"),
    ('victim', ['--lr', 'fast'], "invalid float value: 'fast'"),
    ('victim', ['--preset', 'nope'], 'invalid choice'),
    ('adversarial', ['--split', 'all'], 'invalid choice'),
    ('features', ['--split', 'all'], 'invalid choice'),
    ('run', ['-p', 'epochs'], 'expected 2 arguments'),
    ('datasets', ['--nope'], 'unrecognized arguments: --nope'),
    ('attacks', ['--data-root', 'x'], 'unrecognized arguments'),
    ('adversarial', ['--all', 'yes'], 'unrecognized arguments: yes'),        # a store_true flag takes no value
    ('run', ['--out-dir', 'x'], 'unrecognized arguments'),                   # --out keeps its old spelling
    ('adversarial', ['--keep-all'], 'unrecognized arguments'),
    ('detect', ['scans'], 'the following arguments are required: --detector'),
    ('detect', ['--detector', 'd.pt'], 'the following arguments are required: IMAGES'),
    ('detect', ['--detector', 'd.pt', 'scans', '--batch-size', 'many'], "invalid int value: 'many'"),
    *[(c, ['--device', 'tpu'], "invalid choice: 'tpu' (choose from 'auto', 'cpu', 'cuda', 'mps')") for c in ('victim', 'adversarial', 'features')],
])
def test_usage_errors_exit_2(capsys, cmd, argv, msg):
    with pytest.raises(SystemExit) as e: main([cmd, *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    # a bad value is reported by the command's parser, an extra argument by the top-level one (argparse's split)
    prefix = 'drsn-tvl: error:' if 'unrecognized' in msg else f'drsn-tvl {cmd}: error:'
    assert prefix in err and msg in err, err

@pytest.mark.parametrize('cmd', sorted(OPTIONS))
def test_help_lists_options(capsys, cmd):
    out = help_of(capsys, cmd)
    doc = COMMANDS[cmd].__doc__
    assert f'usage: drsn-tvl {cmd}' in out and ' '.join(doc.split()[:4]) in ' '.join(out.split())   # description = docstring
    for flag in OPTIONS[cmd]: assert f'{flag} ' in out or f'{flag}\n' in out, (cmd, flag)
    for flags, kw in cli_args(COMMANDS[cmd]):
        assert kw.get('help'), (cmd, flags)                                    # every option documented by its comment
        assert ' '.join(kw['help'].split()[:3]) in ' '.join(out.split()), (cmd, flags)

def test_help_texts_come_from_docments(capsys):
    out = ' '.join(help_of(capsys, 'victim').split())
    assert '--force retrain even if cached (default: False)' in out
    assert '--preset {cpu,paper}' in out
    out = ' '.join(help_of(capsys, 'backbones').split())
    assert '--img-size (int) input size for the shapes (default: 224)' in out
    out = ' '.join(help_of(capsys, 'run').split())
    assert '-p KEY VALUE override an experiment parameter' in out and 'one of quick' in out
    out = ' '.join(help_of(capsys, 'adversarial').split())
    assert '--all keep failed attacks too' in out and '--split {train,valid,test}' in out
    out = ' '.join(help_of(capsys, 'detect').split())
    assert 'usage: drsn-tvl detect [-h] --detector PATH' in out and 'IMAGES [IMAGES ...]' in out
    assert 'IMAGES image files, folders (searched recursively) or glob patterns' in out
    assert '--out (str) CSV to write, one row per image scored (default: detections.csv)' in out

def test_top_level_help_and_no_command(capsys):
    out = ' '.join(help_of(capsys).split())
    for cmd, fn in COMMANDS.items(): assert f'{cmd} {fn.__doc__.splitlines()[0]}'[:40] in out, cmd
    assert main([]) == 0 and 'COMMAND' in capsys.readouterr().out

def test_cli_args_rules():
    def toy(
        data_root: str = None,                                   # where the data is
        n: int = 3,                                              # how many
        lr: float = None,
        mode: Annotated[str, {'choices': ('a', 'b')}] = 'a',     # which mode
        keep_all: Annotated[bool, 'keep them', {'flags': '--all'}] = False,
        kv: Annotated[str, {'flags': '-p', 'nargs': 2, 'action': 'append'}] = None,
        plain=None,
        **kwargs):
        "A toy."
    args = dict(cli_args(toy))
    assert list(args) == [('--data-root',), ('--n',), ('--lr',), ('--mode',), ('--all',), ('-p',), ('--plain',)]
    assert args['--data-root',]['help'] == 'where the data is' and args['--data-root',]['type'] is str
    assert args['--n',]['default'] == 3 and args['--n',]['type'] is int and args['--n',]['help'] == 'how many (default: 3)'
    assert args['--lr',]['type'] is float and 'default' not in args['--lr',]
    assert args['--mode',]['choices'] == ('a', 'b')
    assert args['--all',] == {'dest': 'keep_all', 'action': 'store_true', 'default': False, 'help': 'keep them (default: False)'}
    assert args['-p',]['dest'] == 'kv' and args['-p',]['nargs'] == 2 and args['-p',]['action'] == 'append'
    assert 'type' not in args['--plain',]                               # unannotated `x=None`: a plain string option

def test_command_registers_a_signature(capsys, monkeypatch):
    monkeypatch.setattr('drsn_tvl.cli.COMMANDS', dict(COMMANDS))        # register a throwaway command without leaking it
    @command('toy')
    def toy_cmd(
        count: int = 2,        # how many times
        loud: bool = False,    # shout
    ):
        "Say hello."
        print(('HELLO' if loud else 'hello') * count)
        return 5
    assert main(['toy', '--count', '3', '--loud']) == 5 and capsys.readouterr().out == 'HELLOHELLOHELLO\n'
    assert main(['toy']) == 5 and capsys.readouterr().out == 'hellohello\n'
    assert 'how many times (default: 2)' in help_of(capsys, 'toy')

# ---- errors of the commands themselves

def test_command_errors_exit_2(capsys):
    assert main(['detectors', '--in-shape', '16,3']) == 2
    err = capsys.readouterr().err
    assert err.startswith('drsn-tvl detectors: error:') and 'three positive integers' in err
    assert main(['run', '-p', 'nope', '1']) == 2                        # KeyError: its message, not its repr
    err = capsys.readouterr().err
    assert err.startswith("drsn-tvl run: error: unknown experiment parameter 'nope'")
    assert main(['run', '--preset', 'nope']) == 2 and 'unknown preset' in capsys.readouterr().err
    assert main(['adversarial', '--attacks', 'fgsm,nope']) == 2 and 'nope' in capsys.readouterr().err

def test_detectors_command_runs(capsys):
    assert main(['detectors', '--in-shape', '16,3,3']) == 0
    assert 'drsn_tvl' in capsys.readouterr().out

# ---- end to end, in a fresh interpreter as the console script runs it

CLI = 'import sys; from drsn_tvl.cli import main; sys.exit(main())'

def run(*args):
    return subprocess.run([sys.executable, '-c', CLI, *args], capture_output=True, text=True, timeout=300)

def test_console_script_declared():
    txt = (Path(__file__).parents[1] / 'pyproject.toml').read_text()
    assert 'drsn-tvl = "drsn_tvl.cli:main"' in txt

def test_installed_console_script(venv_bin):
    script = venv_bin / 'drsn-tvl'
    if not script.exists() or 'drsn_tvl.cli' not in script.read_text():
        pytest.skip('the installed drsn-tvl script is stale: reinstall the package (pip install -e .)')
    r = subprocess.run([str(script), 'run', '--help'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and '-p KEY VALUE' in r.stdout

def test_datasets_command_lists_registry():
    r = run('datasets')
    assert r.returncode == 0, r.stderr
    for name in EXPECTED: assert name in r.stdout
    assert 'embedded' in r.stdout and 'layout' in r.stdout and 'present' in r.stdout

def test_help_lists_commands():
    r = run('--help')
    assert r.returncode == 0 and 'datasets' in r.stdout and 'prepare' in r.stdout

def test_prepare_synthetic(tmp_path):
    r = run('prepare', '--out', str(tmp_path / 'out'), '--img-size', '32')
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

def test_prepare_real_layout(tmp_path):
    _fakes.eye_diseases(tmp_path / 'data' / 'eye-diseases', n=8)
    r = run('prepare', '--dataset', 'eye-diseases', '--data-root', str(tmp_path / 'data'), '--out', str(tmp_path / 'o'), '--img-size', '24')
    assert r.returncode == 0, r.stderr
    assert pd.read_csv(tmp_path / 'o' / 'summary.csv')['n'].sum() == 32

def test_cli_errors_are_clear(tmp_path):
    r = run('prepare', '--dataset', 'imagenet', '--out', str(tmp_path))
    assert r.returncode == 2 and 'unknown dataset' in r.stderr and 'eye-diseases' in r.stderr
    r = run('prepare', '--dataset', 'eye-diseases', '--data-root', str(tmp_path / 'nothing'), '--out', str(tmp_path))
    assert r.returncode == 2 and 'eye-diseases' in r.stderr and 'Expected layout' in r.stderr
    assert 'Traceback' not in r.stderr
    r = run('datasets', '--nope')                                # argparse's usage error, same status
    assert r.returncode == 2 and 'unrecognized arguments' in r.stderr

# ---- run --root

def test_run_root_reaches_the_experiment(monkeypatch, tmp_path, capsys):
    calls = []
    def fake_run_notebook(dataset, preset, out_dir, data_root, params, log_output=False):
        calls.append((dataset, preset, out_dir, data_root, params)); return tmp_path / 'experiment.ipynb'
    monkeypatch.setattr('drsn_tvl.cli.run_notebook', fake_run_notebook)
    assert main(['run', '--dataset', 'folder', '--root', 'scans', '-p', 'epochs', '3']) in (0, None)
    assert calls == [('folder', 'quick', None, None, {'epochs': 3, 'root': 'scans'})]
    assert main(['run']) in (0, None) and calls[-1][-1] == {}                 # no --root: the experiment's own default
    assert main(['run', '--root', 'a', '-p', 'root', 'a']) in (0, None) and calls[-1][-1] == {'root': 'a'}
    assert main(['run', '--root', 'a', '-p', 'root', 'b']) == 2 and 'disagree' in capsys.readouterr().err
    assert len(calls) == 3

def test_run_root_is_checked_before_papermill(capsys, tmp_path):
    assert main(['run', '--dataset', 'eye-diseases', '--root', str(tmp_path / 'nothing')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('drsn-tvl run: error:') and str(tmp_path / 'nothing') in err and 'does not exist' in err

# ---- detect: screening a folder with a saved pipeline

@pytest.fixture(scope='module')
def saved_pipeline(tmp_path_factory):
    "A calibrated detect-task dnn pipeline on lite0 features of random 32 px images, saved as a run saves it."
    from drsn_tvl.features import create_extractor
    from drsn_tvl.model import fit_detector, image_feature_maps, make_detection_set
    fx, g = create_extractor('tf_efficientnet_lite0'), torch.Generator().manual_seed(1)
    x = torch.rand(18, 3, 32, 32, generator=g)
    fm = lambda im: image_feature_maps(im, fx, 32, clahe=True)
    fc, fa = fm(x), fm((x + (torch.randint(0, 2, x.shape, generator=g) * 2 - 1) * 0.1).clamp(0, 1))
    split = lambda s: make_detection_set(fc[s], fa[s], ['sign'] * len(fc[s]), task='detect')
    det = fit_detector('dnn', split(slice(0, 12)), split(slice(12, 18)), epochs=3, progress=False)
    pipe = DetectionPipeline(det, 'tf_efficientnet_lite0', 32, clahe=True, extractor=fx)
    return pipe, pipe.save(tmp_path_factory.mktemp('run') / 'detector.pt')

@pytest.fixture
def scans(tmp_path):
    "What a user's folder holds: an RGB PNG, a larger RGB JPEG, a grey PNG of another size in a subfolder, a corrupt PNG, a text file."
    d = tmp_path / 'scans'
    _fakes.write_img(d / 'a.png', size=32, seed=1)
    _fakes.write_img(d / 'b.jpg', size=75, seed=2)
    _fakes.write_img(d / 'sub' / 'c.png', size=48, color=False, seed=3)
    (d / 'bad.png').write_bytes(b'\x89PNG\r\n\x1a\n not really')
    (d / 'notes.txt').write_text('not an image')
    return d

def test_detect_scores_a_folder(saved_pipeline, scans, tmp_path, capsys):
    pipe, det = saved_pipeline
    out = tmp_path / 'res' / 'det.csv'
    assert main(['detect', '--detector', str(det), str(scans), '--out', str(out)]) in (0, None)
    cap = capsys.readouterr()
    df = pd.read_csv(out)
    assert list(df.columns) == ['path', 'p_adversarial', 'flagged', 'predicted', 'p_clean']   # p_adversarial once: it is 1 - p_clean
    assert [Path(p).relative_to(scans).as_posix() for p in df['path']] == ['a.png', 'b.jpg', 'sub/c.png']
    ims = [resize(read_image(p), 32) for p in df['path']]
    assert ims[1].shape == ims[2].shape == (32, 32, 3)                       # a larger JPEG and a grey PNG, as trained
    ref = pipe.score(np.stack(ims))
    np.testing.assert_allclose(df['p_adversarial'], ref['p_adversarial'], atol=1e-6)
    assert list(df['flagged']) == list(ref['flagged']) == list(ref['p_adversarial'] > pipe.threshold)
    assert set(df['predicted']) <= {'clean', 'adversarial'} and 'attack' not in df   # a detect-task detector names no attack
    k = int(ref['flagged'].sum())
    assert cap.out == f"3 images, {k} flagged (P(adversarial) > {pipe.threshold:.3f}), 1 skipped: wrote {out}\n"
    assert f'drsn-tvl detect: skipped {scans / "bad.png"}: image file' in cap.err and 'notes.txt' not in cap.err

def test_detect_batches_and_patterns_give_the_same_scores(saved_pipeline, scans, tmp_path, capsys):
    _, det = saved_pipeline
    one, two = tmp_path / 'one.csv', tmp_path / 'two.csv'
    assert main(['detect', '--detector', str(det), str(scans), '--out', str(one)]) in (0, None)
    assert main(['detect', '--detector', str(det), '--batch-size', '1', str(scans / '*.jpg'), str(scans / '**' / '*.png'),
                 str(scans / 'b.jpg'), '--out', str(two)]) in (0, None)                      # b.jpg twice: scored once
    a, b = pd.read_csv(one).set_index('path'), pd.read_csv(two).set_index('path')
    assert sorted(a.index) == sorted(b.index)
    pd.testing.assert_frame_equal(a.loc[b.index], b, check_exact=False, atol=1e-6)
    assert main(['detect', '--detector', str(det), str(scans), '--batch-size', '0']) == 2
    assert '--batch-size must be a positive integer' in capsys.readouterr().err

def test_detect_default_out_is_detections_csv(saved_pipeline, scans, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(['detect', '--detector', str(saved_pipeline[1]), 'scans/a.png']) in (0, None)
    assert capsys.readouterr().out.endswith('0 skipped: wrote detections.csv\n')
    assert list(pd.read_csv(tmp_path / 'detections.csv')['path']) == ['scans/a.png']

def test_detect_nothing_readable_exits_2(saved_pipeline, scans, tmp_path, capsys):
    out = tmp_path / 'none.csv'
    assert main(['detect', '--detector', str(saved_pipeline[1]), str(scans / 'bad.png'), str(scans / 'notes.txt'),
                 str(tmp_path / 'gone'), str(scans / '*.gif'), '--out', str(out)]) == 2
    err = capsys.readouterr().err
    assert 'drsn-tvl detect: error: no readable image' in err and '4 skipped' in err, err
    assert 'gone: no such file or folder' in err and '*.gif: the pattern matches no image file' in err
    assert 'notes.txt: image file' in err and not out.exists()

def test_detect_bad_detector_files(saved_pipeline, scans, tmp_path, capsys):
    from drsn_tvl.model import save_detector
    pipe, _ = saved_pipeline
    (tmp_path / 'text.pt').write_text('hello')
    save_detector(pipe.detector, tmp_path / 'bare.pt')
    torch.save({'weights': torch.zeros(2)}, tmp_path / 'other.pt')
    for name, msg in [('missing.pt', 'missing.pt does not exist'), ('text.pt', 'text.pt is not a file written by DetectionPipeline.save'),
                      ('bare.pt', 'bare detector'), ('other.pt', 'not a saved drsn_tvl detector')]:
        assert main(['detect', '--detector', str(tmp_path / name), str(scans)]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith('drsn-tvl detect: error:') and msg in err and 'Traceback' not in err, (name, err)

def test_detect_refuses_an_uncalibrated_detector(saved_pipeline, scans, tmp_path, capsys):
    pipe, _ = saved_pipeline
    import copy
    det = copy.copy(pipe.detector); det.threshold = None                    # fitted, never calibrated
    f = DetectionPipeline(det, 'tf_efficientnet_lite0', 32, extractor=pipe.extractor).save(tmp_path / 'uncal.pt')
    assert main(['detect', '--detector', str(f), str(scans)]) == 2
    assert 'uncal.pt: the detector has no calibrated threshold' in capsys.readouterr().err

@pytest.fixture(scope='module')
def saved_or_rule(saved_pipeline, tmp_path_factory):
    "The saved pipeline OR `msp` on a (random-weight) lite0 victim, thresholds from union_thresholds, saved as a run saves detector_or_msp.pt."
    from drsn_tvl.baselines import OrPipeline, union_thresholds
    from drsn_tvl.model import fit_detector, make_detection_set
    from drsn_tvl.victim import Victim
    pipe, _ = saved_pipeline
    torch.manual_seed(0)
    v = Victim('tf_efficientnet_lite0', 2, pretrained=False).eval()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(24, 3, 32, 32, generator=g)
    xa = (x + (torch.randint(0, 2, x.shape, generator=g) * 2 - 1) * 0.1).clamp(0, 1)
    sets = [make_detection_set(x[s], xa[s], ['sign'] * len(x[s])) for s in (slice(0, 12), slice(12, 24))]
    msp = fit_detector('msp', *sets, victim=v, seed=0)
    t = union_thresholds([pipe.p_adversarial(x[12:]), msp.p_adversarial(x[12:])])
    orp = OrPipeline(pipe, msp, t, valid_fpr=0.05)
    return orp, orp.save(tmp_path_factory.mktemp('run') / 'detector_or_msp.pt')

def test_detect_with_the_or_rule(saved_or_rule, scans, tmp_path, capsys):
    orp, f = saved_or_rule
    out = tmp_path / 'or.csv'
    assert main(['detect', '--detector', str(f), str(scans), '--out', str(out)]) in (0, None)
    cap = capsys.readouterr()
    df = pd.read_csv(out)
    assert list(df.columns) == ['path', 'p_adversarial', 'flagged', 'predicted', 'p_clean', 'p_msp', 'flagged_detector', 'flagged_msp']
    ref = orp.score(np.stack([resize(read_image(p), 32) for p in df['path']]))
    np.testing.assert_allclose(df['p_msp'], ref['p_msp'], atol=1e-9)
    t0, t1 = orp.thresholds
    assert list(df['flagged']) == list((df['p_adversarial'] > t0) | (df['p_msp'] > t1))     # flagged by either member
    assert list(df['flagged_detector']) == list(df['p_adversarial'] > t0) and list(df['flagged_msp']) == list(df['p_msp'] > t1)
    assert ' or msp doubt > ' in cap.out and '1 skipped' in cap.out, cap.out

def test_or_rule_refuses_another_victim(saved_or_rule, tmp_path):
    from drsn_tvl.baselines import OrPipeline
    from drsn_tvl.core import safe_load
    orp, f = saved_or_rule
    blob = safe_load(f, 'detector')
    blob['victim_state'] = {k: v + 0.01 if v.is_floating_point() else v for k, v in blob['victim_state'].items()}   # another victim
    torch.save(blob, tmp_path / 'swapped.pt')
    with pytest.raises(ValueError, match='saved with victim weights'): OrPipeline.load(tmp_path / 'swapped.pt')
    with pytest.warns(UserWarning, match='OR rule'): DetectionPipeline.load(f)      # the detector alone, said so

def test_detect_console_script(saved_pipeline, scans, tmp_path):
    r = run('detect', '--detector', str(saved_pipeline[1]), str(scans / 'bad.png'), '--out', str(tmp_path / 'x.csv'))
    assert r.returncode == 2 and 'no readable image' in r.stderr and 'Traceback' not in r.stderr
    assert 'IHDR' not in r.stderr                                              # OpenCV's decoder log is silenced; our line says it
    r = run('detect', '--detector', str(saved_pipeline[1]), str(scans), '--out', str(tmp_path / 'x.csv'))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith('3 images, ') and len(pd.read_csv(tmp_path / 'x.csv')) == 3

# ---- cache: what each stage's cache holds, and clearing one

# a cache folder as the stages write it, with known sizes: (stage, entry) -> {file under cache_dir: bytes}
FAKE_CACHE = {
    ('arrays', 'synthetic-train-32-k1.npz'): {'arrays/synthetic-train-32-k1.npz': 3000},
    ('arrays', 'synthetic-test-32-k2.npz'): {'arrays/synthetic-test-32-k2.npz': 1000},
    ('victims', 'v1'): {'victims/v1.pt': 4096, 'victims/v1.json': 204},           # one victim: its .pt and .json together
    ('generators', 'wgan-g1'): {'generators/wgan-g1/state.pt': 2**20, 'generators/wgan-g1/meta.json': 100},
    ('adversarial', 'synthetic-test-a1'): {'adversarial/synthetic-test-a1/clean.pt': 500, 'adversarial/synthetic-test-a1/fgsm/x.pt': 524},
    ('features', 'synthetic-train-lite0-f1'): {'features/synthetic-train-lite0-f1/shard_00000.npy': 3 * 2**20},
    ('features', 'synthetic-valid-lite0-f2'): {'features/synthetic-valid-lite0-f2/shard_00000.npy': 2**20},
    ('other', 'notes.txt'): {'notes.txt': 7},
    ('other', 'mine'): {'mine/keep.bin': 93},
}

def size_of(stage): return sum(sum(f.values()) for (st, _), f in FAKE_CACHE.items() if st == stage)

@pytest.fixture
def fake_cache(tmp_path):
    d = tmp_path / 'cache'                                                 # the DRSN_TVL_CACHE_DIR conftest sets
    for files in FAKE_CACHE.values():
        for f, n in files.items(): (d / f).parent.mkdir(parents=True, exist_ok=True); (d / f).write_bytes(b'x' * n)
    return d

def all_files(d): return sorted(p.relative_to(d).as_posix() for p in d.rglob('*') if p.is_file())

def summary_lines(out):
    "`{stage: (entries, size)}` from the overview table."
    lines = out.splitlines()
    assert lines[1].split() == ['stage', 'entries', 'size', 'newest'], out
    return {l.split()[0]: (int(l.split()[1]), ' '.join(l.split()[2:4])) for l in lines[2:]}

def test_cache_stages_match_the_stage_modules():
    import inspect, importlib
    assert list(CACHE_STAGES) == ['arrays', 'victims', 'generators', 'adversarial', 'features']
    for name, (writer, kind) in CACHE_STAGES.items():
        mod = importlib.import_module(writer.split(':')[0].rsplit('.', 1)[0])
        assert f"/ '{name}'" in inspect.getsource(mod), (name, mod.__name__)       # the folder the module writes under cache_dir
        assert kind in ('file', 'folder', 'stem')

def test_cache_overview_counts_and_sizes(fake_cache, capsys):
    assert main(['cache']) in (0, None)                                       # cache_dir from the settings (here DRSN_TVL_CACHE_DIR)
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f'cache folder {fake_cache}'
    got = summary_lines(out)
    assert list(got) == [*CACHE_STAGES, 'other', 'total']
    assert got == {'arrays': (2, '3.9 KiB'), 'victims': (1, '4.2 KiB'), 'generators': (1, '1.0 MiB'), 'adversarial': (1, '1.0 KiB'),
                   'features': (2, '4.0 MiB'), 'other': (2, '100 B'), 'total': (9, '5.0 MiB')}
    assert size_of('victims') == 4300 and size_of('adversarial') == 1024   # what the strings above say
    newest = [l.split()[4:] for l in out.splitlines()[2:]]
    assert all(len(n) == 2 and n[0][:2] == '20' for n in newest), out    # a date and a time on every non-empty row

def test_cache_cache_dir_option_and_empty_stages(fake_cache, tmp_path, capsys):
    other = tmp_path / 'other-cache'
    (other / 'arrays').mkdir(parents=True); (other / 'arrays' / 'a.npz').write_bytes(b'x' * 2048)
    assert main(['cache', '--cache-dir', str(other)]) in (0, None)
    out = capsys.readouterr().out
    got = summary_lines(out)
    assert got['arrays'] == (1, '2.0 KiB') and got['total'] == (1, '2.0 KiB') and got['victims'] == (0, '0 B')
    assert [l.split()[-1] for l in out.splitlines() if l.startswith('victims')] == ['-']

def test_cache_missing_folder_is_empty(tmp_path, capsys):
    assert main(['cache', '--cache-dir', str(tmp_path / 'never')]) in (0, None)
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"cache folder {tmp_path / 'never'} (does not exist: empty)"
    assert set(summary_lines(out).values()) == {(0, '0 B')} and not (tmp_path / 'never').exists()
    assert main(['cache', '--stage', 'arrays', '--cache-dir', str(tmp_path / 'never')]) in (0, None)
    assert capsys.readouterr().out.splitlines()[-1] == 'arrays: 0 entries, 0 B'
    assert main(['cache', '--clear', 'arrays', '--cache-dir', str(tmp_path / 'never')]) in (0, None)
    assert 'arrays: removed 0 entries, freed 0 B' in capsys.readouterr().out and not (tmp_path / 'never').exists()

def test_cache_stage_lists_entries(fake_cache, capsys):
    assert main(['cache', '--stage', 'features']) in (0, None)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ['name', 'size', 'modified']
    assert [l.split()[:3] for l in lines[2:4]] == [['synthetic-train-lite0-f1', '3.0', 'MiB'], ['synthetic-valid-lite0-f2', '1.0', 'MiB']]
    assert lines[-1] == 'features: 2 entries, 4.0 MiB' and len(lines) == 5
    assert main(['cache', '--stage', 'victims']) in (0, None)
    lines = capsys.readouterr().out.splitlines()
    assert [l.split()[:3] for l in lines[2:-1]] == [['v1', '4.2', 'KiB']]     # .pt and .json: one entry
    assert main(['cache', '--stage', 'other']) in (0, None)
    assert [l.split()[0] for l in capsys.readouterr().out.splitlines()[2:-1]] == ['mine', 'notes.txt']

@pytest.mark.parametrize('stage', list(CACHE_STAGES))
def test_cache_clear_removes_exactly_that_stage(fake_cache, stage, capsys):
    before = all_files(fake_cache)
    assert main(['cache', '--clear', stage]) in (0, None)
    out = capsys.readouterr().out
    n = sum(st == stage for st, _ in FAKE_CACHE)
    from drsn_tvl.cli import human_size
    assert out.splitlines()[-1] == f'{stage}: removed {n} entries, freed {human_size(size_of(stage))}'
    assert all_files(fake_cache) == [f for f in before if not f.startswith(f'{stage}/')]
    assert (fake_cache / stage).is_dir() and not any((fake_cache / stage).iterdir())   # the stage folder stays, empty
    assert main(['cache']) in (0, None)
    got = summary_lines(capsys.readouterr().out)
    assert got[stage] == (0, '0 B') and got['other'] == (2, '100 B')

def test_cache_clear_never_leaves_the_cache(fake_cache, tmp_path, capsys):
    data = tmp_path / 'precious'
    (data / 'arrays').mkdir(parents=True); (data / 'arrays' / 'keep.npz').write_bytes(b'k' * 10)
    (data / 'scan.png').write_bytes(b'p' * 10)
    (fake_cache / 'features' / 'link-to-data').symlink_to(data)                # a link inside a stage: removed as a link
    assert main(['cache', '--clear', 'features']) in (0, None)
    assert 'removed 3 entries' in capsys.readouterr().out
    assert (data / 'scan.png').read_bytes() == b'p' * 10 and not (fake_cache / 'features' / 'link-to-data').exists()
    import shutil
    shutil.rmtree(fake_cache / 'arrays'); (fake_cache / 'arrays').symlink_to(data / 'arrays')   # a stage folder that leaves the cache
    assert main(['cache', '--clear', 'arrays']) in (0, None)
    assert 'arrays: removed 0 entries' in capsys.readouterr().out and (data / 'arrays' / 'keep.npz').exists()
    assert main(['cache', '--stage', 'other']) in (0, None)
    assert 'arrays' in [l.split()[0] for l in capsys.readouterr().out.splitlines()[2:-1]]   # listed as other, never followed

@pytest.mark.parametrize('argv,msg', [
    (['--stage', 'victim'], "unknown cache stage 'victim'; valid stages: arrays, victims, generators, adversarial, features, other"),
    (['--clear', 'nope'], "unknown cache stage 'nope'; valid stages: arrays, victims, generators, adversarial, features"),
    (['--clear', 'other'], "'other' holds what no stage wrote, and is never cleared"),
    (['--clear', '..'], "unknown cache stage '..'"),
    (['--clear', 'arrays', '--stage', 'arrays'], 'give --stage or --clear, not both'),
])
def test_cache_errors_exit_2(fake_cache, capsys, argv, msg):
    before = all_files(fake_cache)
    assert main(['cache', *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith('drsn-tvl cache: error:') and msg in err, err
    assert all_files(fake_cache) == before

def test_cache_folder_that_is_a_file(tmp_path, capsys):
    (tmp_path / 'f').write_text('x')
    assert main(['cache', '--cache-dir', str(tmp_path / 'f')]) == 2
    assert 'is a file; expected a folder' in capsys.readouterr().err

def test_cache_console_script(fake_cache):
    r = run('cache', '--clear', 'nope')
    assert r.returncode == 2 and 'valid stages: arrays' in r.stderr and 'Traceback' not in r.stderr
    r = run('cache')
    assert r.returncode == 0 and summary_lines(r.stdout)['total'] == (9, '5.0 MiB'), r.stderr
