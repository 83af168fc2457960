"""DRSN-TVL against its baselines on real feature maps: detection accuracy, AUROC, TPR at 5 % FPR, speed.

The whole pipeline runs through the library, cached in `cache_dir` (a rerun recomputes only what changed):
1. images: a real dataset from `../shared/data` (default eye-diseases, 128 px), CLAHE before the attack (the threat model);
2. victim: `drsn_tvl.attacks.train_victim` (tf_efficientnet_lite0, shipped ImageNet weights, the settings' epochs);
3. adversarial sets: `build_adversarial_sets` with FGSM and PGD at eps = 2/255 (the `eps` setting) and Gaussian noise
   (std = the `noise_std` setting, 8/255), rounded to the 8-bit grid; FGSM/PGD keep only successful examples of
   correctly classified images; noise keeps every noisy image (it is a random perturbation, rarely "successful");
4. features: `drsn_tvl.features.extract_features` with the frozen ImageNet tf_efficientnet_lite0 (1280×4×4 at 128 px),
   the backbone of the logistic-regression reference point;
5. the `detect` task (balanced, attacks assigned round-robin) on each split; every registered neural detector is
   trained on the same splits with the same budget, for each preset and seed; DRSN-TVL also at a second tv_weight;
6. the reference point: logistic regression on the pooled feature vectors, on the mixed set and per attack.

Prints figures (mean ± std over seeds); asserts nothing.

    .venv/bin/python benchmarks/bench_model.py [--dataset eye-diseases] [--img-size 128] [--n-train 1000]
        [--n-valid 300] [--n-test 600] [--seeds 0,1,2] [--presets tuned,paper] [--epochs 30] [--tv-weights 0.1,0.01]
"""
import argparse, os, statistics, time, warnings

import numpy as np
import pandas as pd
import torch

from drsn_tvl.core import get_settings
from drsn_tvl.victim import train_victim
from drsn_tvl.attacks import build_adversarial_set
from drsn_tvl.features import extract_features
from drsn_tvl.model import make_detection_set, fit_detector, evaluate, list_detectors, DETECTORS, detection_metrics, threshold_at_fpr

ATTACKS = ('fgsm', 'pgd', 'noise')

def log(*a): print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)

def feature_maps(images_u8, labels, progress=False):
    "uint8 N×3×H×W images → (float32 maps N×C×h×w, float32 pooled vectors N×D) from the frozen lite0 extractor (cached)."
    src = (images_u8.permute(0, 2, 3, 1).contiguous(), np.asarray(labels))
    fs = extract_features(src, backbone='tf_efficientnet_lite0', layer='final', pool=0, size=0, progress=progress)
    return torch.from_numpy(fs.maps[:].astype(np.float32)), fs.vecs[:].astype(np.float32), fs.manifest.get('weights')

def split_sets(aset):
    "The detect set (mixed attacks) and one detect set per attack, plus pooled vectors, for one AdversarialSet."
    y = aset.labels
    cmap, cvec, src = feature_maps(aset.clean, y)
    maps, vecs, names, source = [], [], [], []
    for a in ATTACKS:
        keep = np.ones(len(y), bool) if a == 'noise' else aset.success[a].numpy()
        m, v, _ = feature_maps(aset.adv[a][torch.from_numpy(keep)], y[keep])
        maps.append(m); vecs.append(v); names += [a] * int(keep.sum()); source.append(np.flatnonzero(keep))
    adv, advv, names, source = torch.cat(maps), np.concatenate(vecs), np.array(names), np.concatenate(source)
    mixed = make_detection_set(cmap, adv, names, source, task='detect', attack_order=ATTACKS)
    per = {a: make_detection_set(cmap, adv[names == a], names[names == a], source[names == a], task='detect') for a in ATTACKS}
    # pooled vectors in the same row order as the detect sets (clean rows: the source image; adversarial rows: that row)
    def vec_rows(ds, rows_adv):
        out = []
        for i, (s, a) in enumerate(zip(ds.source, ds.attack)):
            out.append(cvec[s] if a == 'clean' else rows_adv[(s, a)])
        return np.stack(out)
    rows_adv = {(s, a): advv[i] for i, (s, a) in enumerate(zip(source, names))}
    vec = {'mixed': vec_rows(mixed, rows_adv), **{a: vec_rows(per[a], rows_adv) for a in ATTACKS}}
    return mixed, per, vec, src

def logreg_anchor(vtr, ytr, vva, yva, vte, yte):
    "The reference point: standardised pooled features → logistic regression; accuracy, AUROC, TPR at 5 % FPR (threshold on valid)."
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(vtr, ytr)
    t = threshold_at_fpr(yva == 1, clf.predict_proba(vva)[:, 1], 0.05)
    return detection_metrics(yte, clf.predict_proba(vte), threshold=t)

def ms(v):
    v = [x for x in v if x == x]
    if not v: return 'n/a'
    return f"{100 * statistics.mean(v):.2f} ± {100 * (statistics.stdev(v) if len(v) > 1 else 0):.2f}"

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dataset', default='eye-diseases'); ap.add_argument('--img-size', type=int, default=128)
    ap.add_argument('--n-train', type=int, default=1000); ap.add_argument('--n-valid', type=int, default=300)
    ap.add_argument('--n-test', type=int, default=600); ap.add_argument('--seeds', default='0,1,2')
    ap.add_argument('--presets', default='tuned,paper'); ap.add_argument('--epochs', type=int, default=None)
    ap.add_argument('--tv-weights', default=None, help='DRSN-TVL tv_weights (default: the setting, and 0.01)')
    ap.add_argument('--detectors', default=None, help='comma list (default: every neural detector)')
    a = ap.parse_args()
    warnings.filterwarnings('ignore')
    s = get_settings()
    seeds = [int(x) for x in a.seeds.split(',')]
    presets = a.presets.split(',')
    epochs = a.epochs or s.epochs
    tvws = [float(x) for x in a.tv_weights.split(',')] if a.tv_weights else sorted({float(s.tv_weight), 0.01}, reverse=True)
    names = a.detectors.split(',') if a.detectors else [n for n in list_detectors() if DETECTORS[n].neural]
    log(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}; dataset {a.dataset} at {a.img_size} px; "
        f"eps {s.eps * 255:.0f}/255, noise std {s.noise_std * 255:.0f}/255; epochs {epochs}, patience {s.patience}")

    t0 = time.time()
    victim = train_victim(a.dataset, backbone='tf_efficientnet_lite0', img_size=a.img_size, progress=False)
    log(f"victim {victim.meta['config']['backbone']} ({victim.source}) test metrics {victim.meta['test']} "
        f"[{time.time() - t0:.0f} s incl. cache]")
    sets, per, vec = {}, {}, {}
    for split, n in (('train', a.n_train), ('valid', a.n_valid), ('test', a.n_test)):
        t0 = time.time()
        aset = build_adversarial_set(victim, split, attacks=list(ATTACKS), n_max=n, only_successful=False, progress=False)
        st = aset.stats.set_index('attack')
        log(f"{split}: {len(aset.index)}/{aset.n_split} sampled images correctly classified; success "
            + ', '.join(f"{k} {st.loc[k, 'success_rate']:.3f}" for k in ATTACKS) + f" [{time.time() - t0:.0f} s]")
        t0 = time.time()
        sets[split], per[split], vec[split], src = split_sets(aset)
        log(f"{split}: features ({src}) {tuple(sets[split].x.shape)}; mixed rows per attack "
            f"{sets[split].counts().sum(1).to_dict()}; dropped clean {sets[split].n_dropped} [{time.time() - t0:.0f} s]")

    print("\n## reference point: logistic regression on pooled lite0 features (deterministic)")
    for k in ('mixed',) + ATTACKS:
        tr = sets['train'] if k == 'mixed' else per['train'][k]
        va = sets['valid'] if k == 'mixed' else per['valid'][k]
        te = sets['test'] if k == 'mixed' else per['test'][k]
        m = logreg_anchor(vec['train'][k], tr.y.numpy(), vec['valid'][k], va.y.numpy(), vec['test'][k], te.y.numpy())
        print(f"logreg {k:6s}: n_test {len(te):4d}  acc {100 * m['accuracy']:.2f}  AUROC {m['auroc']:.4f}  "
              f"TPR@5%FPR {100 * m['tpr_at_fpr']:.2f} (test FPR {100 * m['fpr']:.2f})", flush=True)

    runs = []
    configs = [(n, dict(tv_weight=w), f"{n} (tv {w:g})") for n in names if n == 'drsn_tvl' for w in tvws]
    configs += [(n, {}, n) for n in names if n != 'drsn_tvl']
    for preset in presets:
        for name, kw, label in configs:
            for seed in seeds:
                t0 = time.time()
                d = fit_detector(name, sets['train'], sets['valid'], preset=preset, epochs=epochs, seed=seed, progress=False, **kw)
                fit_s = time.time() - t0
                m = evaluate(d, sets['test'])
                x = sets['test'].x
                d.predict_proba(x[:256])                       # warm-up
                ts = []
                for _ in range(3):
                    t1 = time.perf_counter(); d.predict_proba(x); ts.append(time.perf_counter() - t1)
                c = d.complexity()
                runs.append(dict(detector=label, preset=preset, seed=seed, acc=m['accuracy'], auroc=m['auroc'], tpr=m['tpr_at_fpr'],
                                 fpr=m['fpr'], f1=m['f1'], **{f'det_{k}': v for k, v in m['per_attack'].items()},
                                 epochs_run=len(d.history), best_epoch=d.best_epoch, lr=d.lr_used,
                                 s_epoch=float(np.mean(d.epoch_times)), fit_s=fit_s, maps_s=len(x) / statistics.median(ts),
                                 params_m=c['params_m'], gflops=c['gflops']))
                r = runs[-1]
                log(f"{label:16s} {preset:5s} seed {seed}: acc {100 * r['acc']:.2f} AUROC {r['auroc']:.4f} TPR@5% {100 * r['tpr']:.2f} "
                    f"epochs {r['epochs_run']} (best {r['best_epoch']}) lr {r['lr']:.2g} {r['s_epoch']:.2f} s/epoch, {r['maps_s']:.0f} maps/s")
    df = pd.DataFrame(runs)
    print(f"\n## Detect task, mixed FGSM/PGD/noise, test n = {len(sets['test'])}; mean ± std (%) over seeds {seeds}")
    rows = []
    for (det, preset), g in df.groupby(['detector', 'preset'], sort=False):
        rows.append({'detector': det, 'preset': preset, 'accuracy': ms(g.acc), 'AUROC': ms(g.auroc), 'TPR@5%FPR': ms(g.tpr),
                     'test FPR': ms(g.fpr), **{f'det. {k}': ms(g[f'det_{k}']) for k in ATTACKS}, 'clean flagged': ms(g['det_clean']),
                     'epochs': f"{g.epochs_run.mean():.1f}", 's/epoch': f"{g.s_epoch.mean():.2f}",
                     'maps/s': f"{g.maps_s.mean():.0f}", 'params M': f"{g.params_m.iloc[0]:.3f}", 'GFLOPs': f"{g.gflops.iloc[0]:.4f}"})
    with pd.option_context('display.width', 300, 'display.max_columns', 30):
        print(pd.DataFrame(rows).to_string(index=False))
    log(f"done; load average {os.getloadavg()[0]:.1f}")

if __name__ == '__main__':
    main()
