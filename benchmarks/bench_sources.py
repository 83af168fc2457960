"""Which signal should a detector read? The frozen ImageNet backbone (the paper), the victim's own maps, or both.

Issue 14. Everything runs through the library and its caches (a rerun recomputes only what changed):
1. victim: `train_victim(dataset, backbone=tf_efficientnet_lite0, img_size, epochs, max_train, seed=0)`;
2. adversarial sets: `build_adversarial_set(victim, split, attacks=[fgsm, pgd, noise], n_max, seed=0)` at eps
   (settings default 2/255; 8-bit grid, only successful examples kept), and a second test set at --eps-test;
3. features per source (`create_extractor(backbone, source=..., victim=victim, grid=...)` + `extract_features`):
   backbone = the frozen ImageNet lite0 map (2×2 at 64 px, 4×4 at 128 px), victim = the victim's five stage maps
   pooled to grid×grid + its logits as channels, both = the backbone's map resized to the grid + the victim's;
4. the detect task (balanced; attacks round-robin) per split; detectors fitted on train, model selection and the
   5 %-FPR threshold on valid only, scored on test (and on the eps-test set with the same threshold).

DRSN-TVL variants (--variants) are compared on VALID AUROC (then valid accuracy); the row marked `*` is the one
chosen that way, the others are shown for honesty. Prints a table; asserts nothing.

    .venv/bin/python benchmarks/bench_sources.py --dataset eye-diseases --data-root ../shared/data \
        [--img-size 128] [--victim-epochs 4] [--max-train 3000] [--n-max 400] [--sources backbone,victim,both] \
        [--detectors logreg,dnn] [--variants paper,tuned,...] [--eps-test 1] [--grid 4] [--seed 0]
PneumoniaMNIST: --dataset medmnist --img-size 28 (the flag defaults to pneumoniamnist).
"""
import argparse, os, time, warnings

import numpy as np
import pandas as pd
import torch

ATTACKS = ['fgsm', 'pgd', 'noise']

# DRSN-TVL training recipes and architectures tried on the victim's maps (chosen on valid)
VARIANTS = {
    'paper':        dict(preset='paper'),                                         # Table 1: Adam 1e-5 constant, 30 epochs
    'tuned':        dict(preset='tuned'),                                         # lr_find valley + one-cycle, AdamW
    'oc3e-3':       dict(preset='tuned', lr=3e-3),                                # one-cycle AdamW at a fixed lr
    'oc1e-3':       dict(preset='tuned', lr=1e-3),
    'oc1e-3-tv0':   dict(preset='tuned', lr=1e-3, tv_weight=0.),
    'oc1e-3-tv1':   dict(preset='tuned', lr=1e-3, tv_weight=1.),
    'oc1e-3-w128':  dict(preset='tuned', lr=1e-3, arch=dict(stem=128, widths=[128, 128])),
    'oc1e-3-w32x1': dict(preset='tuned', lr=1e-3, arch=dict(stem=32, widths=[32])),
    'oc1e-3-w64x3': dict(preset='tuned', lr=1e-3, arch=dict(stem=64, widths=[64, 64, 64])),
    'oc1e-3-e60':   dict(preset='tuned', lr=1e-3, epochs=60, patience=10),
}


def log(*a): print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


def detection_sets(asets, fx, order=ATTACKS):
    "{split: DetectionSet} of the detect task from adversarial sets, features from extractor `fx` (cached on disk)."
    from drsn_tvl.features import extract_features
    from drsn_tvl.model import make_detection_set
    maps = lambda x: torch.from_numpy(np.asarray(
        extract_features((x, np.zeros(len(x), np.int64)), extractor=fx, progress=False).maps[:], dtype=np.float32))
    out = {}
    for s, a in asets.items():
        feats, names, src = [], [], []
        for att in order:
            kept = np.flatnonzero(a.kept(att))
            if len(kept): feats.append(maps(a.images(att))); names += [att] * len(kept); src.append(kept)
        out[s] = make_detection_set(maps(a.images(None)), torch.cat(feats), np.array(names), np.concatenate(src), 'detect', order)
    return out


def score(det, data):
    from drsn_tvl.model import evaluate
    m = evaluate(det, data)
    return {k: m[k] for k in ('accuracy', 'auroc', 'tpr_at_fpr', 'fpr')}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dataset', default='eye-diseases'); ap.add_argument('--data-root', default='../shared/data')
    ap.add_argument('--img-size', type=int, default=128); ap.add_argument('--victim-epochs', type=int, default=4)
    ap.add_argument('--max-train', type=int, default=3000); ap.add_argument('--n-max', type=int, default=400)
    ap.add_argument('--backbone', default='tf_efficientnet_lite0'); ap.add_argument('--grid', type=int, default=4)
    ap.add_argument('--sources', default='backbone,victim,both'); ap.add_argument('--detectors', default='logreg,dnn')
    ap.add_argument('--variants', default='paper,tuned,oc1e-3', help=f"DRSN-TVL variants: {', '.join(VARIANTS)}")
    ap.add_argument('--eps-test', type=float, default=1., help='second test budget in grey levels (0: none)')
    ap.add_argument('--seed', type=int, default=0); ap.add_argument('--threads', type=int, default=0)
    ap.add_argument('--flag', default=None, help='medmnist flag (default pneumoniamnist)')
    a = ap.parse_args()
    warnings.filterwarnings('ignore')
    if a.threads: torch.set_num_threads(a.threads)
    from drsn_tvl.core import get_settings
    from drsn_tvl.victim import train_victim
    from drsn_tvl.attacks import build_adversarial_set
    from drsn_tvl.features import create_extractor
    from drsn_tvl.model import fit_detector
    import drsn_tvl.baselines  # noqa: F401  (registers logreg and the classic detectors)
    eps = float(get_settings().eps)
    ds_kw = dict(flag=a.flag or 'pneumoniamnist') if a.dataset == 'medmnist' else {}
    t0 = time.time()
    victim = train_victim(a.dataset, backbone='tf_efficientnet_lite0', img_size=a.img_size, epochs=a.victim_epochs,
                          max_train=a.max_train, seed=a.seed, data_root=a.data_root, progress=False, **ds_kw)
    log(f"victim {victim.arch} test accuracy {100 * victim.meta['test']['accuracy']:.2f} % [{time.time() - t0:.0f} s incl. cache]")
    asets, extra = {}, {}
    for s in ('train', 'valid', 'test'):
        t0 = time.time()
        asets[s] = build_adversarial_set(victim, s, attacks=ATTACKS, n_max=a.n_max, seed=a.seed, progress=False)
        st = asets[s].stats.set_index('attack')
        log(f"{s} eps {eps * 255:g}/255: kept " + ', '.join(f"{k} {st.loc[k, 'kept']}" for k in ATTACKS) + f" [{time.time() - t0:.0f} s]")
    if a.eps_test:
        e = a.eps_test / 255; t0 = time.time()
        extra = {'test': build_adversarial_set(victim, 'test', attacks=ATTACKS, n_max=a.n_max, seed=a.seed, progress=False,
                                               params={'fgsm': dict(eps=e), 'pgd': dict(eps=e)})}
        st = extra['test'].stats.set_index('attack')
        log(f"test eps {a.eps_test:g}/255: kept " + ', '.join(f"{k} {st.loc[k, 'kept']}" for k in ATTACKS) + f" [{time.time() - t0:.0f} s]")
    rows, srcs = [], [x for x in a.sources.split(',') if x]
    if not srcs: log('no --sources: adversarial sets built (cached), nothing to fit'); return
    for src in srcs:
        t0 = time.time()
        fx = create_extractor(a.backbone, pool=0, seed=a.seed, source=src, victim=victim, grid=a.grid).eval()
        data = detection_sets(asets, fx)
        data_e = detection_sets(extra, fx) if extra else {}
        log(f"source {src}: maps {tuple(data['train'].x.shape[1:])}, rows train/valid/test "
            f"{len(data['train'])}/{len(data['valid'])}/{len(data['test'])} [{time.time() - t0:.0f} s]")
        fits = [(d, d, {}) for d in a.detectors.split(',') if d] + [('drsn_tvl', f'drsn_tvl[{v}]', VARIANTS[v]) for v in a.variants.split(',') if v]
        for name, label, kw in fits:
            t0 = time.time()
            kw = dict(progress=False, **kw)
            det = fit_detector(name, data['train'], data['valid'], seed=a.seed, **kw)
            fit_s = time.time() - t0
            va, te = score(det, data['valid']), score(det, data['test'])
            row = dict(source=src, detector=label, valid_auroc=va['auroc'], valid_acc=va['accuracy'], **te, fit_s=fit_s)
            if data_e: row.update({f'{k}@{a.eps_test:g}': v for k, v in score(det, data_e['test']).items() if k != 'fpr'})
            rows.append(row)
            log(f"  {label:22s} valid AUROC {100 * va['auroc']:.2f} | test acc {100 * te['accuracy']:.2f} AUROC {100 * te['auroc']:.2f} "
                f"TPR@5% {100 * te['tpr_at_fpr']:.2f}" + (f" | eps {a.eps_test:g}: AUROC {100 * row[f'auroc@{a.eps_test:g}']:.2f}" if data_e else '')
                + f" [{fit_s:.0f} s]")
    df = pd.DataFrame(rows)
    drsn = df.detector.str.startswith('drsn_tvl[')
    best = df[drsn].sort_values(['valid_auroc', 'valid_acc'], ascending=False).groupby('source', sort=False).head(1).index
    df.loc[best, 'detector'] = df.loc[best, 'detector'] + ' *'
    pct = [c for c in df if c not in ('source', 'detector', 'fit_s')]
    df[pct] = (df[pct] * 100).round(2)
    print(f"\n## {a.dataset} ({a.img_size} px), victim {victim.arch} (test acc {100 * victim.meta['test']['accuracy']:.2f} %), "
          f"eps {eps * 255:g}/255 {ATTACKS}, n_max {a.n_max}; test metrics in %, threshold at 5 % FPR on valid; "
          f"* = DRSN-TVL variant chosen on valid")
    with pd.option_context('display.width', 250, 'display.max_columns', 30):
        print(df.round({'fit_s': 1}).to_string(index=False))


if __name__ == '__main__':
    main()
