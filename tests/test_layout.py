"""The house rules of the package: notebooks in pipeline order, one module each, imports only downward, one place that
reads the settings file, every settings key used by a stage's config."""
import ast, importlib, json, re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS, PKG = ROOT / 'nbs', ROOT / 'drsn_tvl'
# the design card's seven stages, in its order, must keep their own notebooks
STAGES = ['data', 'clahe', 'wgan', 'attacks', 'features', 'drsn_tvl', 'experiments']


def numbered():
    "[(number, notebook stem, module or None)] of the numbered notebooks, in file order."
    out = []
    for p in sorted(NBS.glob('[0-9][0-9]_*.ipynb')):
        cells = json.loads(p.read_text())['cells']
        mod = next((m[1] for c in cells if (m := re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(c['source']), re.M))), None)
        out.append((int(p.name[:2]), p.stem, mod))
    return out


def drsn_imports(path: Path) -> set:
    "Package modules that `path` imports, at the top or inside functions."
    tree, out = ast.parse(path.read_text()), set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom):
            if n.level == 1 and n.module: out.add(n.module.split('.')[0])
            elif n.module and n.module.startswith('drsn_tvl.'): out.add(n.module.split('.')[1])
            elif n.module == 'drsn_tvl': out |= {a.name for a in n.names}
        elif isinstance(n, ast.Import):
            out |= {a.name.split('.')[1] for a in n.names if a.name.startswith('drsn_tvl.')}
    return out


def test_notebooks_in_pipeline_order_one_module_each():
    nbs = numbered()
    nums = [n for n, _, _ in nbs]
    assert nums == sorted(set(nums)), f"notebook numbers must be unique and increasing: {nums}"
    mods = [m for _, _, m in nbs if m]
    assert len(mods) == len(set(mods)), f"two notebooks export to the same module: {mods}"
    stems = [s.split('_', 1)[1] for _, s, _ in nbs]
    assert [s for s in stems if s in STAGES] == STAGES, f"the seven stage notebooks are out of order: {stems}"
    assert {p.stem for p in PKG.glob('*.py')} - {'__init__', '_modidx'} == set(mods), "a module without a notebook (or the reverse)"


def test_imports_only_run_down_the_pipeline():
    rank = {m: n for n, _, m in numbered() if m}
    bad = []
    for m, r in rank.items():
        for dep in drsn_imports(PKG / f'{m}.py'):
            if dep in rank and rank[dep] >= r: bad.append(f'{m} ({r:02d}) imports {dep} ({rank[dep]:02d})')
    assert not bad, bad


def test_the_checker_sees_an_upward_import(tmp_path):
    f = tmp_path / 'x.py'
    f.write_text("from .experiment import run_experiment\ndef f():\n    from drsn_tvl.cli import main\n")
    assert drsn_imports(f) == {'experiment', 'cli'}


def test_no_link_to_files_outside_the_repository():
    "The docs and docstrings point at pages of the site, never at notes users do not have."
    offenders = [str(p.relative_to(ROOT)) for p in [*NBS.glob('*.ipynb'), *PKG.glob('*.py'), ROOT / 'README.md', ROOT / 'settings.ini']
                 if 'DESIGN.md' in p.read_text()]
    assert not offenders, offenders


# the only places that read the settings file: core's reader, each config's `from_settings`, and entry points that record
# or resolve a whole run's settings (prepare's summary, the experiment's parameters)
SETTINGS_READERS = {'core.get_settings', 'core.StageConfig.from_settings', 'wgan.GANConfig.from_settings', 'wgan.gan_variant_table',
                    'clahe.prepare', 'cli.prepare_cmd', 'experiment.experiment_params', 'experiment._parse_kv'}


def settings_reads(path: Path) -> set:
    "'module.function' for every function of `path` that calls get_settings / read_settings / setting itself."
    out, mod = set(), path.stem
    def visit(node, owner):
        for ch in ast.iter_child_nodes(node):
            o = f"{owner}.{ch.name}" if isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else owner
            if isinstance(ch, ast.Call):
                f = ch.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
                if name in ('get_settings', 'read_settings', 'setting') and owner != mod: out.add(owner)
            visit(ch, o)
    visit(ast.parse(path.read_text()), mod)
    return out


def test_settings_are_read_only_at_entry_points():
    found = set().union(*(settings_reads(p) for p in PKG.glob('*.py') if p.name != '_modidx.py'))
    extra = found - SETTINGS_READERS
    assert not extra, f"read the settings below an entry point (build a StageConfig at the entry point instead): {sorted(extra)}"


def test_the_settings_checker_sees_a_deep_read(tmp_path):
    f = tmp_path / 'm.py'
    f.write_text("def entry(cfg=None):\n    return helper()\ndef helper():\n    return get_settings().seed\n")
    assert settings_reads(f) == {'m.helper'}


def test_every_settings_key_belongs_to_a_stage_config():
    from drsn_tvl.core import StageConfig, read_sections
    for m in ('data', 'clahe', 'wgan', 'victim', 'attacks', 'features', 'model', 'baselines'): importlib.import_module(f'drsn_tvl.{m}')
    def subclasses(c): return set(c.__subclasses__()).union(*(subclasses(s) for s in c.__subclasses__()))
    from dataclasses import fields
    claimed = {f.name for c in subclasses(StageConfig) for f in fields(c)}
    # the GAN recipes are read by prefix (wgan_* / gan_*) into GANConfig's recipe fields
    keys = {k for sec in read_sections().values() for k in sec if not k.startswith(('wgan_', 'gan_'))}
    assert keys - claimed == set(), f"settings keys no stage config uses: {sorted(keys - claimed)}"
    for c in subclasses(StageConfig):
        if c.section: assert c.section in read_sections(), f"{c.__name__}.section {c.section!r} is not a section of settings.ini"
