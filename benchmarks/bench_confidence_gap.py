"""Does the victim's own confidence flag the attacks a detector never saw? (Issue 14's unseen-attack target.)

The detectors learn from FGSM / PGD / noise, which leave the victim confidently wrong. The minimal attacks (DeepFool,
CW, Boundary) stop just past the decision boundary, where the victim is torn between two classes. This script scores
every test attack of a finished run three ways:
1. the run's saved detector (`detector.pt`, the best one), at the 5 %-FPR threshold of the valid clean rows;
2. the victim's confidence gap, top-1 minus top-2 softmax probability (Hendrycks & Gimpel 2017). It is read from the
   logits that the `victim` feature source carries as its last channels. Low gap = suspicious; the threshold is again
   the 5 % FPR of valid clean;
3. the OR of both, each at 2.5 % FPR on valid, so that the pair spends the same 5 % budget (overlaps make it a bit more
   or less on other rows: the clean FPR on valid and test is printed).

It runs the experiment's attack stages with the run's parameters. On the cache the run filled, that is a read; on an
empty cache it recomputes them (the whole attack part of the run). Prints a table; asserts nothing.

    .venv/bin/python benchmarks/bench_confidence_gap.py --run out/eye-diseases-cpu --dataset eye-diseases \
        --data-root ../shared/data --preset cpu [--source victim]
"""
import argparse, json, warnings

import numpy as np
from sklearn.metrics import roc_auc_score


def gap_score(x, k: int) -> np.ndarray:
    "−(p_top1 − p_top2) of the victim's softmax, from the last k channels of victim-source features (its logits, checked in main)."
    z = x[:, -k:, 0, 0].float()
    p = z.softmax(1).sort(1, descending=True).values
    return -(p[:, 0] - p[:, 1]).numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--run', required=True, help='output folder of the run (holds detector.pt and results.json)')
    ap.add_argument('--dataset', required=True); ap.add_argument('--data-root', default=None)
    ap.add_argument('--preset', default='cpu'); ap.add_argument('--ds-kwargs', default='{}', help='JSON, e.g. {"flag": "pneumoniamnist"}')
    ap.add_argument('--img-size', type=int, default=None)
    ap.add_argument('--source', default='victim', help="the saved detector's feature source (the run's summary names it): victim or both")
    a = ap.parse_args()
    warnings.filterwarnings('ignore')
    from pathlib import Path
    from drsn_tvl.experiment import Run, check_params, detection_data, experiment_params, extractor_for, run_attack_stages
    from drsn_tvl.model import load_detector, threshold_at_fpr
    run, source = Path(a.run), a.source
    if source == 'backbone':
        raise SystemExit(f"{run}: its detector reads the backbone features, which carry no victim logits; the gap needs the "
                         f"'victim' or 'both' source")
    kw = dict(dataset=a.dataset, data_root=a.data_root, ds_kwargs=json.loads(a.ds_kwargs), out_dir=str(run / '.confidence_gap'))
    if a.img_size: kw['img_size'] = a.img_size
    r = Run(check_params(experiment_params(a.preset, **kw)), False)
    ctx = run_attack_stages(r)
    p, victim = r.p, ctx['victim']
    det, k = load_detector(run / 'detector.pt'), victim.n_classes
    layout = extractor_for(p, source=source, victim=victim).shapes((p['img_size'], p['img_size']))['channels']
    if layout[-1] != ('logits', k): raise SystemExit(f"the {source} features end with {layout[-1]}, not the victim's {k} logits")
    val = detection_data(p, {'valid': ctx['asets']['valid']}, list(p['attacks']), source=source, victim=victim)['valid']
    cv = (val.y == 0).numpy()
    sd_v, sg_v = det.p_adversarial(val.x), gap_score(val.x, k)
    t5d = det.threshold                                          # the detector's own 5 %-FPR threshold, set on these valid rows
    t25d, t5g, t25g = (threshold_at_fpr(~cv, s, f) for s, f in ((sd_v, .025), (sg_v, .05), (sg_v, .025)))
    print(f"# {a.dataset}, run {run.name}, detector {det.name} on the {source} features; thresholds on {int(cv.sum())} valid clean rows; "
          f"OR rule's clean FPR on valid {100 * ((sd_v[cv] > t25d) | (sg_v[cv] > t25g)).mean():.1f} %")
    sets = {x: ctx['asets']['test'] for x in p['attacks']}
    sets.update({x: ctx['test_unseen'] for x in ctx['unseen']})
    print(f"{'attack':12s} {'n':>4s} {'detector TPR@5%':>16s} {'gap TPR@5%':>11s} {'gap AUROC':>10s} {'OR TPR':>7s} {'OR clean FPR':>13s}")
    for name, aset in sets.items():
        try: d = detection_data(p, {'test': aset}, [name], source=source, victim=victim)['test']
        except ValueError as e: print(f"{name:12s} no kept example ({str(e)[:60]})"); continue
        adv, cl = (d.y != 0).numpy(), (d.y == 0).numpy()
        sd, sg = det.p_adversarial(d.x), gap_score(d.x, k)
        u = (sd > t25d) | (sg > t25g)
        print(f"{name:12s} {adv.sum():4d} {100 * (sd[adv] > t5d).mean():16.1f} {100 * (sg[adv] > t5g).mean():11.1f} "
              f"{100 * roc_auc_score(adv, sg):10.1f} {100 * u[adv].mean():7.1f} {100 * u[cl].mean():13.1f}")


if __name__ == '__main__':
    main()
