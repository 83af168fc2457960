"The drsn-tvl command line: the parser built from the command signatures, error handling, and the prepare stage end to end."
import argparse, json, subprocess, sys
from pathlib import Path
from typing import Annotated
import pandas as pd
import pytest

from drsn_tvl.cli import COMMANDS, build_parser, cli_args, command, main
from drsn_tvl.data import SPLITS
from drsn_tvl.victim import VICTIM_RECIPES
from test_data import EXPECTED
import _fakes

# Every option of every command as it was spelled before the options came from signatures: flag -> (dest, kind, default).
# kind: a type (the value is converted with it), 'flag' (store_true), a tuple (choices) or 'kv' (-p KEY VALUE, repeatable).
# An option renamed, dropped or added by mistake, a changed default or a lost type fails test_flags_dests_defaults.
DS, ROOTS = {'--dataset': ('dataset', str, None)}, {'--data-root': ('data_root', str, None), '--root': ('root', str, None)}
OPTIONS = {
    'datasets': {'--data-root': ('data_root', str, None)},
    'prepare': {**DS, '--out': ('out_dir', str, None), **ROOTS, '--img-size': ('img_size', int, None)},
    'attacks': {},
    'victim': {**DS, '--backbone': ('backbone', str, None), '--preset': ('preset', tuple(sorted(VICTIM_RECIPES)), None),
               '--img-size': ('img_size', int, None), '--epochs': ('epochs', int, None), '--lr': ('lr', float, None),
               '--weights': ('weights', str, None), **ROOTS, '--force': ('force', 'flag', False)},
    'adversarial': {**DS, '--split': ('split', SPLITS, 'test'), '--attacks': ('attacks', str, None), '--backbone': ('backbone', str, None),
                    '--img-size': ('img_size', int, None), '--epochs': ('epochs', int, None), '--n-max': ('n_max', int, None),
                    '--all': ('keep_all', 'flag', False), **ROOTS},
    'backbones': {'--img-size': ('img_size', int, 224), '--layers': ('layers', 'flag', False)},
    'features': {**DS, '--split': ('split', SPLITS, 'train'), '--img-size': ('img_size', int, None), '--clahe': ('clahe', 'flag', False),
                 '--backbone': ('backbone', str, None), '--layer': ('layer', str, None), '--pool': ('pool', int, None),
                 '--size': ('size', int, None), '--batch-size': ('batch_size', int, None), '--shard-size': ('shard_size', int, None),
                 '--num-workers': ('num_workers', int, None), '--weights': ('weights', str, None),
                 '--random-weights': ('random_weights', 'flag', False), '--out': ('out', str, None),
                 '--overwrite': ('overwrite', 'flag', False), '--verify': ('verify', 'flag', False)},
    'detectors': {'--in-shape': ('in_shape', str, '2560,7,7')},
    'run': {'--dataset': ('dataset', str, 'synthetic'), '--data-root': ('data_root', str, None), '--preset': ('preset', str, 'quick'),
            '--out': ('out_dir', str, None), '-p': ('kv', 'kv', None)},
}

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
    opts = OPTIONS[cmd]
    assert vars(parse(cmd)) == {'cmd': cmd, **{dest: d for dest, _, d in opts.values()}}   # exactly these dests and defaults
    for flag, (dest, kind, _) in opts.items():
        if kind == 'flag': argv, want = [flag], True
        elif kind == 'kv': argv, want = [flag, 'epochs', '3', flag, 'seeds', '0,1'], [['epochs', '3'], ['seeds', '0,1']]
        elif isinstance(kind, tuple): argv, want = [flag, kind[-1]], kind[-1]
        elif kind is str: argv, want = [flag, 'x1'], 'x1'
        else: argv, want = [flag, '7'], kind('7')
        got = getattr(parse(cmd, *argv), dest)
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
