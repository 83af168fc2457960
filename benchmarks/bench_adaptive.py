"""Detection that survives a detector-aware attacker: seconds per strong adaptive example, adversarial-training cost, the table.

Through the library (cached in `cache_dir`):
1. victim: `train_victim` (tf_efficientnet_lite0) on `--dataset` at `--img-size` (synthetic: `--synthetic-n` phantoms);
2. adversarial sets: `build_adversarial_set` per split with FGSM, PGD (eps `--eps`/255) and noise, at most `--n-max` images a split;
3. detectors on frozen lite0 feature maps: `drsn_tvl` (tuned, `--epochs`) and `logreg` fitted plainly, and their
   detector-aware adversarially trained versions `drsn_tvl_at`, `logreg_at` (`--rounds` rounds, `--at-steps`-step joint PGD),
   all through `classic_table` (any registered detector with `--detectors`; a union such as `srm_twin` reuses its members
   when they come before it in the list, so its fit time is then only its calibration); the training time of each `_at`
   detector relative to its plain one;
4. seconds per adaptive example of `strong_adaptive_attack` per variant (`--steps` steps, `--restarts` restarts) on --timing-n images;
5. the robust victim: `train_robust_victim` at eps/2 (`--robust-epochs`);
6. `beyond_adaptive_table` on at most `--n` test images at eps `--eps-list`/255, and `success_vs_eps` (masking check)
   for `--masking-detector` (the strong tables for `--evaluate`, default all detectors).

Prints tables and timings; asserts nothing.

    .venv/bin/python benchmarks/bench_adaptive.py [--dataset synthetic] [--synthetic-n 1500] [--img-size 64] [--n 200]
        [--steps 50] [--restarts 2] [--rounds 2] [--at-steps 10] [--eps-list 2,8] [--data-root ../shared/data]
"""
import argparse, time, warnings

import numpy as np
import pandas as pd
import torch

from drsn_tvl.victim import train_victim
from drsn_tvl.attacks import build_adversarial_set
from drsn_tvl import baselines as B
from drsn_tvl.features import create_extractor
from drsn_tvl.model import DETECTORS, DetectionPipeline


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--dataset', default='synthetic'); ap.add_argument('--data-root', default=None)
    ap.add_argument('--synthetic-n', type=int, default=1500); ap.add_argument('--img-size', type=int, default=64)
    ap.add_argument('--victim-epochs', type=int, default=3); ap.add_argument('--n-max', type=int, default=300)
    ap.add_argument('--n', type=int, default=200); ap.add_argument('--steps', type=int, default=50)
    ap.add_argument('--restarts', type=int, default=2); ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--at-steps', type=int, default=10); ap.add_argument('--epochs', type=int, default=15)
    ap.add_argument('--robust-epochs', type=int, default=2); ap.add_argument('--eps', type=float, default=2)
    ap.add_argument('--eps-list', default='2,8'); ap.add_argument('--masking-eps', default='0.5,2,8,32,128')
    ap.add_argument('--masking-detector', default='drsn_tvl_at'); ap.add_argument('--detectors', default='logreg,drsn_tvl,logreg_at,drsn_tvl_at')
    ap.add_argument('--evaluate', default=None, help='detectors of the strong tables (default: all of --detectors)')
    ap.add_argument('--seed', type=int, default=0); ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--timing-n', type=int, default=16, help='images of the seconds-per-example measurement')
    ap.add_argument('--ckpt-dir', default=None, help='checkpoints of the adversarial-training rounds (resume)')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    warnings.filterwarnings('ignore')
    pd.set_option('display.width', 250); pd.set_option('display.max_columns', 40); pd.set_option('display.max_rows', 200)
    t0 = time.time(); times = {}
    def tick(k): times[k] = round(time.time() - t0 - sum(times.values()), 1); print(f'[{k}: {times[k]} s]', flush=True)
    eps_list = tuple(float(e) / 255 for e in a.eps_list.split(','))
    cfg = B.baseline_config(eps=a.eps / 255, strong_steps=a.steps, strong_restarts=a.restarts, at_rounds=a.rounds, at_steps=a.at_steps,
                            adaptive_eps=eps_list, robust_epochs=a.robust_epochs, seed=a.seed,
                            masking_eps=tuple(float(e) / 255 for e in a.masking_eps.split(',')))
    ds_kwargs = {'n': a.synthetic_n} if a.dataset == 'synthetic' else {}
    victim = train_victim(a.dataset, img_size=a.img_size, epochs=a.victim_epochs, data_root=a.data_root, seed=a.seed, progress=False, **ds_kwargs)
    tick('victim')
    params = {k: {'eps': a.eps / 255} for k in ('fgsm', 'pgd')}
    asets = {s: build_adversarial_set(victim, s, attacks=['fgsm', 'pgd', 'noise'], params=params, n_max=a.n_max if s != 'test' else None,
                                      seed=a.seed, progress=False, **ds_kwargs) for s in ('train', 'valid', 'test')}
    tick('adversarial sets')
    print(f"# {a.dataset}, {a.img_size} px, victim {victim.arch} ({victim.source}), clean test accuracy {victim.meta['test']['accuracy']:.3f}; "
          f"detectors trained at eps {a.eps:g}/255; eval: {a.steps} steps × {a.restarts} restarts, variants {cfg.strong_variants}")
    fx = create_extractor('tf_efficientnet_lite0')
    names = a.detectors.split(',')
    fit_kw = dict(preset='tuned', epochs=a.epochs)
    fit_s, fitted = {}, {}
    for n in names:
        t1 = time.time()
        _, f = B.classic_table(victim, fx, asets, detectors=[n], fitted={m: fitted[m] for m in DETECTORS[n].defaults.get('members', ()) if m in fitted}, seed=a.seed, fit_kw=fit_kw, cfg=cfg,
                               at_kw=dict(ckpt_dir=a.ckpt_dir, progress=True))     # a union (srm_twin) reuses its members fitted before it
        fitted[n] = f[n]; fit_s[n] = time.time() - t1
        if isinstance(f[n], B.AdvTrained): print(n, 'rounds:', f[n].log)
    tick('detector fits')
    print("\n## training time, adversarially trained vs plain detector (seconds; classic_table fit incl. feature maps)")
    for n in names:
        if n.endswith('_at') and n[:-3] in fit_s:
            print(f"{n}: {fit_s[n]:.1f} s vs {n[:-3]}: {fit_s[n[:-3]]:.1f} s -> x{fit_s[n] / max(fit_s[n[:-3]], 1e-9):.1f}")
    test = asets['test']
    x_all, y_all = test.images(None), torch.from_numpy(test.labels)
    # seconds per adaptive example, per variant (16 correctly classified test images, the strongest detector pipeline)
    with torch.no_grad(): ok = victim.eval()(x_all[:64]).argmax(1) == y_all[:64]
    xs, ys = x_all[:64][ok][:a.timing_n], y_all[:64][ok][:a.timing_n]
    tn = names[-1]
    sc = DetectionPipeline(fitted[tn], extractor=fx, clahe=False, img_size=a.img_size)
    print(f"\n## seconds per adaptive example vs {tn} ({a.steps} steps × {a.restarts} restarts, {len(xs)} images, eps {eps_list[0] * 255:g}/255)")
    for v in B.ADAPTIVE_VARIANTS:
        t1 = time.time()
        _, rec = B.strong_adaptive_attack(victim, sc, xs, ys, eps=eps_list[0], variant=v, cfg=cfg)
        print(f"{v}: {(time.time() - t1) / len(xs):.3f} s/example; evades both {rec['evades'].float().mean():.3f}")
    tick('per-example timing')
    rv = B.train_robust_victim(victim, asets['train'], labels=None, valid=asets['valid'], cfg=cfg)
    tick('robust victim')
    cols = ['n', 'attack_success', 'detected', 'detected_lo', 'detected_hi', 'evades_both', 'evades_both_lo', 'evades_both_hi', 'clean_fpr',
            'detector_robust_acc', 'bound_robust_acc', 'exceeds_bound', 'clean_acc', 'robust_acc']
    order = sorted(a.evaluate.split(',') if a.evaluate else names, key=lambda n: not n.endswith('_at'))    # the adversarially trained first
    for n in order:                                                          # one detector at a time: each table prints as it is done
        tab, curves = B.beyond_adaptive_table(victim, fx, {n: fitted[n]}, x_all, y_all, robust_victim=rv, n_max=a.n, seed=a.seed, cfg=cfg)
        tick(f'beyond_adaptive_table {n}')
        print(f"\n## beyond_adaptive_table, {n} (detected = TPR at the valid 5 %-FPR threshold among successful examples, 95 % Wilson CIs)")
        print(tab[[c for c in cols if c in tab]].round(3).to_string())
        print("loss curves (mean joint hinge loss at steps 0, 25 %, 50 %, 100 %; evades-both of the iterate)")
        for k, c in curves.items():
            idx = [0, len(c) // 4, len(c) // 2, len(c) - 1]
            print(' ', k, np.round(c.loss.values[idx], 4).tolist(), 'evades', np.round(c.evades_both.values[idx], 3).tolist(), flush=True)
    if a.masking_detector in fitted:
        with torch.no_grad(): ok = victim(x_all[:a.n]).argmax(1) == y_all[:a.n]
        m = B.success_vs_eps(victim, DetectionPipeline(fitted[a.masking_detector], extractor=fx, clahe=False, img_size=a.img_size),
                             x_all[:a.n][ok][:64], y_all[:a.n][ok][:64], variant='orthogonal', cfg=cfg.replace(strong_restarts=1))
        print(f"\n## gradient-masking check: success vs eps, orthogonal, {a.masking_detector}, 1 restart, {int(ok[:64].sum())} images")
        print(m.round(3).to_string())
        tick('masking check')
    print("\n## stage seconds:", times, f"total {time.time() - t0:.0f} s")


if __name__ == '__main__':
    main()
