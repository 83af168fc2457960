"""The robust twin's recipe: how robust a PGD-trained twin of the victim becomes, and how it detects static and adaptive PGD.

Through the library: `train_victim` (tf_efficientnet_lite0, 3 epochs) on `--dataset` at `--img-size`; the twin with
`train_robust_victim` on the victim's whole train split (or `--n-train` seeded images) at `--train-eps`/255 for
`--epochs` epochs of `--steps`-step PGD (lr `--lr`), labelled with the victim's own predictions; the `twin` detector
(`RobustTwin`) around it, its threshold at 5 % FPR on the clean rows of the valid adversarial set (FGSM, PGD, noise at
2/255, at most 300 images); then on the test split: the twin's agreement with the victim, static AUROC and TPR per
attack, the twin's robust accuracy (`robust_accuracy`, PGD at 2/255) on 200 test images, and `beyond_adaptive_table` on
200 correctly classified test images with `--eval-steps` steps × `--eval-restarts` restarts. Prints; asserts nothing.

    .venv/bin/python benchmarks/bench_twin.py --data-root ../shared/data --train-eps 2 --epochs 3 --steps 3
    .venv/bin/python benchmarks/bench_twin.py --data-root ../shared/data --train-eps 4 --epochs 5 --steps 3
"""
import argparse, time, warnings

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from drsn_tvl import baselines as B
from drsn_tvl.attacks import build_adversarial_set
from drsn_tvl.model import DetectionPipeline
from drsn_tvl.victim import predict, train_victim, victim_splits
from drsn_tvl.wgan import as_tensors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--dataset', default='medmnist'); ap.add_argument('--data-root', default=None)
    ap.add_argument('--img-size', type=int, default=64); ap.add_argument('--n-train', type=int, default=0, help='0: the whole train split')
    ap.add_argument('--train-eps', type=float, default=4); ap.add_argument('--epochs', type=int, default=5)
    ap.add_argument('--steps', type=int, default=3); ap.add_argument('--lr', type=float, default=1e-4)
    ap.add_argument('--eval-steps', type=int, default=20); ap.add_argument('--eval-restarts', type=int, default=1)
    ap.add_argument('--seed', type=int, default=0); ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads); warnings.filterwarnings('ignore')
    pd.set_option('display.width', 250); pd.set_option('display.max_columns', 40)
    t0 = time.time()
    tick = lambda m: print(f'[{time.time() - t0:.0f} s] {m}', flush=True)
    victim = train_victim(a.dataset, img_size=a.img_size, epochs=3, data_root=a.data_root, seed=a.seed, progress=False)
    tick(f"victim {victim.arch}, clean test accuracy {victim.meta['test']['accuracy']:.4f}")
    sp = victim_splits(victim.meta['config'])
    (x, y), (xv, yv) = (as_tensors(sp[s], f'{s} split') for s in ('train', 'valid'))
    x, xv = x.float() / 255, xv.float() / 255
    if a.n_train and a.n_train < len(y):
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(a.seed))[:a.n_train].sort().values
        x, y = x[keep], y[keep]
    lab = predict(victim, x).argmax(1)                                  # the victim's labels: the twin should agree on clean
    cfg = B.baseline_config(eps=2 / 255, strong_steps=a.eval_steps, strong_restarts=a.eval_restarts, adaptive_eps=(2 / 255,),
                            robust_steps=a.steps, seed=a.seed)
    twin = B.train_robust_victim(victim, x, lab, valid=(xv[:200], predict(victim, xv[:200]).argmax(1)), eps=a.train_eps / 255,
                                 epochs=a.epochs, lr=a.lr, cfg=cfg)
    tick(f'twin PGD-trained at {a.train_eps:g}/255 on {len(y)} images, {a.epochs} epochs of {a.steps}-step PGD, lr {a.lr:g}')
    params = {k: {'eps': 2 / 255} for k in ('fgsm', 'pgd')}
    asets = {s: build_adversarial_set(victim, s, attacks=['fgsm', 'pgd', 'noise'], params=params, n_max=300 if s != 'test' else None,
                                      seed=a.seed, progress=False) for s in ('valid', 'test')}
    det = B.RobustTwin((3, a.img_size, a.img_size), ['clean', 'adversarial'], victim=victim, cfg=cfg, eps=a.train_eps / 255).use_twin(twin)
    va = asets['valid']
    det.calibrate(torch.cat([va.clean.float() / 255, *[va.adv[t][va.kept(t)].float() / 255 for t in va.attacks]]),
                  torch.cat([torch.zeros(len(va.clean)), *[torch.ones(int(va.kept(t).sum())) for t in va.attacks]]).long())
    te = asets['test']; xt, yt = te.images(None), torch.from_numpy(te.labels)
    agree = float((predict(twin, xt).argmax(1) == predict(victim, xt).argmax(1)).float().mean())
    tick(f'test: twin/victim agreement on the {len(xt)} correctly classified clean images {agree:.3f}')
    sc = DetectionPipeline(det, clahe=False, img_size=a.img_size)
    p0, f0 = det.p_adversarial(xt), sc.flagged(xt).numpy()
    for t in te.attacks:
        xa = te.adv[t][te.kept(t)].float() / 255
        p1 = det.p_adversarial(xa)
        auc = roc_auc_score(np.r_[np.zeros(len(p0)), np.ones(len(p1))], np.r_[p0, p1])
        print(f'static {t}: n={len(xa)} AUROC {auc:.4f} TPR at the valid 5 %-FPR threshold {sc.flagged(xa).float().mean():.3f}, clean FPR {f0.mean():.3f}')
    rb = B.robust_accuracy(twin, xt[:200], yt[:200], 2 / 255, cfg=cfg)
    tick(f"twin robust accuracy at 2/255 (PGD-{a.eval_steps}, 200 test images): {rb['robust_acc']:.3f} "
         f"[{rb['robust_acc_lo']:.3f}, {rb['robust_acc_hi']:.3f}], clean {rb['clean_acc']:.3f}")
    tab, _ = B.beyond_adaptive_table(victim, None, {'twin': det}, xt, yt, n_max=200, seed=a.seed, cfg=cfg)
    cols = ['n', 'attack_success', 'detected', 'detected_lo', 'detected_hi', 'evades_both', 'clean_fpr', 'detector_robust_acc']
    print(tab[cols].round(3).to_string())
    tick('done')


if __name__ == '__main__':
    main()
