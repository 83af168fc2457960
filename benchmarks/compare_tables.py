"""Compare the tables of two experiment runs byte for byte, timing columns aside.

The check behind "behaviour unchanged" for a refactoring: run the main job from an empty cache and compare its CSV
tables with a recorded run (`results/synthetic-quick` holds the quick preset's main job):

    python benchmarks/compare_tables.py results/synthetic-quick --run /tmp/quick-check

`--run DIR` first runs `drsn-tvl run --preset quick --out DIR/out` with the cache in `DIR/cache` (so nothing cached
elsewhere is reused); without it, the second argument is an existing run folder:

    python benchmarks/compare_tables.py results/synthetic-quick out

The paper's own tables (`paper_table_*.csv`, constants) are not compared. Timing columns (`stage_seconds.csv` entirely, `sec_per_image` of `attack_stats.csv`) are dropped before comparing;
every other byte must match. Exit status 1 if any table differs or is missing on one side.
"""
import argparse, os, subprocess, sys, time
from pathlib import Path


from drsn_tvl.experiment import TIMING, compare_runs   # noqa: F401  (TIMING: the timing columns left out)


def compare(a: Path, b: Path) -> list:
    "Rows (table, status) for every CSV in either folder: identical, DIFFERENT, or missing on one side."
    return [(n, 'timing only (skipped)' if s == 'timing only' else s) for n, s in compare_runs(a, b)['status'].items()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('reference', type=Path, help='folder of the recorded run (e.g. results/synthetic-quick)')
    ap.add_argument('other', type=Path, nargs='?', help='folder of the run to compare (not with --run)')
    ap.add_argument('--run', type=Path, help='run the quick preset first into RUN/out with a fresh cache RUN/cache')
    a = ap.parse_args(argv)
    if a.run is not None:
        out = a.run / 'out'
        env = dict(os.environ, DRSN_TVL_CACHE_DIR=str(a.run / 'cache'))
        exe = Path(sys.executable).with_name('drsn-tvl')
        t = time.time()
        subprocess.run([str(exe), 'run', '--preset', 'quick', '--out', str(out)], env=env, check=True)
        print(f"ran the quick preset in {time.time() - t:.0f} s into {out}")
        other = out
    elif a.other is not None: other = a.other
    else: ap.error('give a second run folder or --run DIR')
    rows = compare(a.reference, other)
    w = max(len(n) for n, _ in rows)
    print(f"{'table':{w}}  status   ({a.reference} vs {other})")
    for n, s in rows: print(f"{n:{w}}  {s}")
    bad = [n for n, s in rows if s not in ('identical', 'timing only (skipped)')]
    print(f"{len(rows) - len(bad)} of {len(rows)} tables identical (timing aside)" + (f"; differing or missing: {bad}" if bad else ''))
    return 1 if bad else 0


if __name__ == '__main__': sys.exit(main())
