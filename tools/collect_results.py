"""Copy the small artefacts of experiment runs (tables as CSV/Markdown, figures, results.json, report.md) into results/.

    .venv/bin/python tools/collect_results.py RUN_DIR [RUN_DIR ...] [--dest results]

Each RUN_DIR (an `--out` folder of `drsn-tvl run`, or an `out_dir` of `run_experiment`) becomes results/<name of RUN_DIR>/.
The executed notebook is left out (it embeds every figure again); the paper's transcribed tables are left out too
(`drsn_tvl.experiment.paper_table` rebuilds them). The Results page (nbs/10_results.ipynb) reads results/.
"""
import argparse, shutil, sys
from pathlib import Path

def collect(run: Path, dest: Path) -> Path:
    if not (run / 'results.json').is_file(): sys.exit(f"{run}: no results.json: not a finished experiment run")
    out = dest / run.name
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in sorted(run.iterdir()):
        if f.suffix in ('.csv', '.md', '.png', '.json') and not f.name.startswith('paper_table_'): shutil.copy2(f, out / f.name)
    return out

if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('runs', nargs='+'); ap.add_argument('--dest', default='results')
    a = ap.parse_args()
    for r in a.runs: print(collect(Path(r), Path(a.dest)))
