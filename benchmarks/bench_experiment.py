"""End-to-end time per stage of the experiment, and reproducibility: the same run twice gives the same numbers.

Runs `drsn_tvl.experiment.run_experiment` `--repeats` times (default 2), each with a fresh, empty cache folder, so every
stage is computed from scratch (victim, generators, attacks, features, detectors); prints the seconds per stage of each
run and compares every table of the runs cell by cell (the `stage_seconds` table excepted). Asserts nothing.

    .venv/bin/python benchmarks/bench_experiment.py --preset quick
    .venv/bin/python benchmarks/bench_experiment.py --preset cpu --dataset eye-diseases --data-root ../shared/data --repeats 1
    .venv/bin/python benchmarks/bench_experiment.py --preset quick -p max_images 24 -p epochs 3      # smaller
"""
import argparse, json, os, tempfile, time
from pathlib import Path
import pandas as pd

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--preset', default='quick')
    ap.add_argument('--dataset', default='synthetic')
    ap.add_argument('--data-root', default=None)
    ap.add_argument('--repeats', type=int, default=2)
    ap.add_argument('--threads', type=int, default=None)
    ap.add_argument('--work', default=None, help='folder for the runs (default: a temporary folder)')
    ap.add_argument('-p', dest='kv', nargs=2, action='append', metavar=('KEY', 'VALUE'), default=[])
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix='bench_experiment_'))
    import torch
    if a.threads: torch.set_num_threads(a.threads)
    runs = []
    for r in range(a.repeats):
        # a fresh cache per run: the settings are read per call, so the environment variable reaches every stage
        os.environ['DRSN_TVL_CACHE_DIR'] = str(work / f'cache{r}')
        from drsn_tvl.experiment import run_experiment, _parse_kv
        kw = _parse_kv(a.kv)
        t = time.perf_counter()
        tabs = run_experiment(a.preset, dataset=a.dataset, data_root=a.data_root, out_dir=str(work / f'out{r}'), show=False, **kw)
        total = time.perf_counter() - t
        runs.append((tabs, total))
        print(f"run {r + 1}: {total:.1f} s end to end (torch threads {torch.get_num_threads()}, cache {work / f'cache{r}'})", flush=True)
    stages = pd.concat([t['stage_seconds'].assign(run=i + 1) for i, (t, _) in enumerate(runs)]).set_index('run').T
    stages.loc['total (wall)'] = [round(s, 1) for _, s in runs]
    print(f"\nseconds per stage, preset {a.preset}, dataset {a.dataset}:\n{stages.to_string()}")
    if len(runs) > 1:
        first = runs[0][0]
        for i, (tabs, _) in enumerate(runs[1:], 2):
            diff = []
            for name, df in first.items():
                if name == 'stage_seconds': continue
                other = tabs.get(name)
                if other is None or not df.astype(str).equals(other.astype(str)): diff.append(name)
            print(f"run {i} vs run 1: {len(first) - 1 - len(diff)} of {len(first) - 1} tables identical"
                  + (f"; differ: {diff}" if diff else ''))
    print(f"outputs: {work}")

if __name__ == '__main__': main()
