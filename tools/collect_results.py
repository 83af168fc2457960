"""Copy the small artefacts of experiment runs (tables as CSV/Markdown, figures, results.json, summary.md, report.md) into results/.

    .venv/bin/python tools/collect_results.py RUN_DIR [RUN_DIR ...] [--dest results]
    .venv/bin/python tools/collect_results.py --archive results/RUN [...]     # only keep the record of an older-code run
    .venv/bin/python tools/collect_results.py [RUN_DIR ...] --render          # then re-execute the Results page in place

Each RUN_DIR (an `--out` folder of `drsn-tvl run`, or an `out_dir` of `run_experiment`) becomes results/<name of RUN_DIR>/.
The executed notebook is left out (it embeds every figure again); the paper's transcribed tables are left out too
(`drsn_tvl.experiment.paper_table` rebuilds them). The Results page (nbs/10_results.ipynb) reads results/.

When results/<name> already holds a run made with older code (its results.json has no `feature_sources` parameter), its
results.json, which records every table, is kept as results/previous/<name>/results.json before it is replaced: the
Results page's "What changed" section compares the two. Nothing is copied if a text file names a machine path
(/work/, /tmp/, /root/, /home/): results/ is published with the documentation.
"""
import argparse, json, os, re, shutil, subprocess, sys
from pathlib import Path

KEEP = ('.csv', '.md', '.png', '.json')
MACHINE_PATH = re.compile(r'(?<![\w.~])/(?:work|tmp|root|home)/')

def is_older_code(run: Path) -> bool:
    "Whether a collected run was made before the feature sources existed (its parameters lack `feature_sources`)."
    f = run / 'results.json'
    return f.is_file() and 'feature_sources' not in json.loads(f.read_text()).get('params', {})

def archive(run: Path, dest: Path) -> Path | None:
    "Keep the results.json of an older-code collected run as dest/previous/<name>/results.json (once: an archived record stays)."
    if not is_older_code(run): return None
    out = dest / 'previous' / run.name
    if not (out / 'results.json').is_file():
        out.mkdir(parents=True, exist_ok=True); shutil.copy2(run / 'results.json', out / 'results.json')
    return out

def machine_paths(run: Path) -> list:
    "`file: path` for every text file to be copied that names a machine path."
    bad = []
    for f in sorted(run.iterdir()):
        if f.suffix in ('.csv', '.md', '.json') and (m := MACHINE_PATH.search(f.read_text(errors='replace'))):
            line = f.read_text(errors='replace')[:m.start()].count('\n') + 1
            bad.append(f"{f.name}:{line}: {m.group(0)}")
    return bad

def collect(run: Path, dest: Path) -> Path:
    if not (run / 'results.json').is_file(): sys.exit(f"{run}: no results.json: not a finished experiment run")
    bad = machine_paths(run)
    if bad: sys.exit(f"{run}: machine paths in the run's files (results/ is published; record paths relative to the repository): "
                     + '; '.join(bad))
    out = dest / run.name
    if out.resolve() == run.resolve(): sys.exit(f"{run}: is already the destination {out}")
    if out.exists():
        archive(out, dest); shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in sorted(run.iterdir()):
        if f.suffix in KEEP and not f.name.startswith('paper_table_'): shutil.copy2(f, out / f.name)
    return out

def render(root: Path = Path(__file__).resolve().parents[1]):
    "Re-execute nbs/10_results.ipynb in place (it reads ../results from nbs/), then nbdev-clean it (outputs are kept)."
    bin_ = Path(sys.executable).parent
    env = {**os.environ, 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')}
    subprocess.run([str(bin_ / 'jupyter'), 'nbconvert', '--to', 'notebook', '--execute', '--inplace', '10_results.ipynb'],
                   cwd=root / 'nbs', env=env, check=True)
    subprocess.run([str(bin_ / 'nbdev-clean'), '--fname', 'nbs/10_results.ipynb'], cwd=root, env=env, check=True)
    print('re-rendered nbs/10_results.ipynb')

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('runs', nargs='*'); ap.add_argument('--dest', default='results')
    ap.add_argument('--render', action='store_true', help='then re-execute nbs/10_results.ipynb in place and nbdev-clean it')
    ap.add_argument('--archive', action='store_true', help='only keep the record of older-code runs already in results/')
    a = ap.parse_args()
    for r in a.runs:
        if a.archive: print(archive(Path(r), Path(a.dest)) or f"{r}: current code, nothing to archive")
        else: print(collect(Path(r), Path(a.dest)))
    if a.render: render()
    elif not a.runs: ap.error('no run folder given (and no --render)')
