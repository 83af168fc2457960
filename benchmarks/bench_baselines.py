"""Classic detectors vs DRSN-TVL, static and adaptive attacks: prints the tables of `drsn_tvl.baselines`.

The pipeline runs through the library, cached in `cache_dir` (a rerun recomputes only what changed):
1. victim: `train_victim` (tf_efficientnet_lite0, shipped ImageNet weights) on `--dataset` at `--img-size`;
2. adversarial sets: `build_adversarial_set` per split with FGSM, PGD (eps `--eps`, default the setting 2/255) and
   Gaussian noise, only successful FGSM/PGD examples of correctly classified images, at most `--n-max` images a split;
3. `classic_table`: every baseline (KD+BU, LID, Mahalanobis with/without pre-processing, feature squeezing, DFeat)
   and DRSN-TVL (`fit_detector('drsn_tvl', preset tuned, --epochs)` on frozen lite0 feature maps of the same rows),
   AUROC and TPR at the validation 5 %-FPR threshold per test attack;
4. `adaptive_table`: static PGD vs adaptive PGD and CW-variant attacks against every detector at eps 2, 4, 8/255 on
   at most `--adaptive-n` correctly classified test images, `--steps` iterations.

Prints figures and timings; asserts nothing.

    .venv/bin/python benchmarks/bench_baselines.py [--dataset synthetic] [--img-size 64] [--n-max 300]
        [--adaptive-n 48] [--steps 10] [--epochs 15] [--data-root ../shared/data] [--flag pneumoniamnist] [--seed 0]
"""
import argparse, time, warnings

import numpy as np
import pandas as pd
import torch

from drsn_tvl.victim import train_victim
from drsn_tvl.attacks import build_adversarial_set
from drsn_tvl.baselines import classic_table, adaptive_table, BASELINES
from drsn_tvl.features import create_extractor
from drsn_tvl.model import make_detection_set, fit_detector, image_feature_maps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--dataset', default='synthetic'); ap.add_argument('--data-root', default=None)
    ap.add_argument('--img-size', type=int, default=64); ap.add_argument('--victim-epochs', type=int, default=3)
    ap.add_argument('--n-max', type=int, default=300); ap.add_argument('--adaptive-n', type=int, default=48)
    ap.add_argument('--steps', type=int, default=10); ap.add_argument('--epochs', type=int, default=15)
    ap.add_argument('--eps', type=float, default=None); ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--flag', default=None, help='medmnist subset, e.g. pneumoniamnist')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    warnings.filterwarnings('ignore')
    pd.set_option('display.width', 250); pd.set_option('display.max_columns', 30)
    t0 = time.time(); times = {}
    def tick(k): times[k] = round(time.time() - t0 - sum(times.values()), 1)

    ds_kwargs = {'flag': a.flag} if a.flag else {}
    victim = train_victim(a.dataset, img_size=a.img_size, epochs=a.victim_epochs, data_root=a.data_root, seed=a.seed, progress=False,
                          **ds_kwargs)
    tick('victim')
    params = {k: {'eps': a.eps} for k in ('fgsm', 'pgd')} if a.eps else None
    asets = {s: build_adversarial_set(victim, s, attacks=['fgsm', 'pgd', 'noise'], params=params, n_max=a.n_max,
                                      seed=a.seed, progress=False) for s in ('train', 'valid', 'test')}
    tick('adversarial sets')
    print(f"# {a.dataset}, {a.img_size} px, victim {victim.arch} ({victim.source}), clean test accuracy "
          f"{victim.meta['test']['accuracy']:.3f}; eps {(a.eps or 2 / 255) * 255:.1f}/255")
    print(pd.concat([st.stats.assign(split=s) for s, st in asets.items()]).set_index(['split', 'attack'])
          [['clean_accuracy', 'attacked', 'successful', 'kept', 'linf_mean']].round(4).to_string())

    fx = create_extractor('tf_efficientnet_lite0')
    feats = {}
    for s, st in asets.items():
        fm = lambda x: image_feature_maps(x, fx, a.img_size, clahe=False)
        names = [n for n in st.attacks if st.kept(n).any()]
        feats[s] = make_detection_set(fm(st.images(None)), torch.cat([fm(st.images(n)) for n in names]),
                                      np.concatenate([[n] * int(st.kept(n).sum()) for n in names]),
                                      np.concatenate([np.flatnonzero(st.kept(n)) for n in names]), 'detect', names)
    tick('features')
    drsn = fit_detector('drsn_tvl', feats['train'], feats['valid'], preset='tuned', epochs=a.epochs, progress=False, seed=a.seed)
    tick('drsn_tvl fit')
    tab, fitted = classic_table(victim, fx, asets, fitted={'drsn_tvl': drsn}, seed=a.seed)
    tick('classic table (baseline fits + scoring)')
    print(f"\n## classic_table: detector × static attack, test split (rows per split: "
          f"{', '.join(f'{s} {len(d)}' for s, d in feats.items())})")
    print(tab.round(3).to_string())

    test = asets['test']
    x, y = test.images(None), torch.from_numpy(test.labels)
    adt = adaptive_table(victim, fx, fitted, x, y, steps=a.steps, n_max=a.adaptive_n, seed=a.seed)
    tick('adaptive table')
    print(f"\n## adaptive_table: static PGD vs adaptive attacks ({a.steps} steps), clean FPR fixed by the validation threshold")
    print(adt.round(3).to_string())
    ev = adt['evades_both'].unstack('attack')
    print("\n## evades both (victim fooled and detector below its 5 %-FPR threshold)")
    print(ev.round(3).to_string())
    print("\n## stage seconds:", times, f"total {time.time() - t0:.0f} s")


if __name__ == '__main__':
    main()
