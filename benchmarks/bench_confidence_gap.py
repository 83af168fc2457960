"""Does the victim's own confidence flag the attacks a detector never saw? (Issue 14's unseen-attack target.)

The detectors learn from FGSM / PGD / noise, which leave the victim confidently wrong. The minimal attacks (DeepFool,
CW, Boundary) stop just past the decision boundary, where the victim is torn between two classes. For every test
attack of a finished run, this script prints what the experiment's Tables 10-11 give for its unseen attacks, but for the
standard attacks as well:
1. the run's saved detector (`detector.pt`, the best one), at the 5 %-FPR threshold of the valid clean rows;
2. `msp`, the victim's softmax gap (Hendrycks & Gimpel 2017, 08_baselines), at its own 5 %-FPR threshold;
3. the OR rule of both (`fit_union`: thresholds set on the valid clean rows so the pair flags at most 5 % of them), with
   its clean FPR on the same test rows.

It runs the experiment's attack stages with the run's parameters. On the cache the run filled, that is a read; on an
empty cache it recomputes them (the whole attack part of the run). Prints a table; asserts nothing.

    .venv/bin/python benchmarks/bench_confidence_gap.py --run out/eye-diseases-cpu --dataset eye-diseases \
        --data-root ../shared/data --preset cpu [--source victim]
"""
import argparse, json, warnings


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--run', required=True, help='output folder of the run (holds detector.pt)')
    ap.add_argument('--dataset', required=True); ap.add_argument('--data-root', default=None)
    ap.add_argument('--preset', default='cpu'); ap.add_argument('--ds-kwargs', default='{}', help='JSON, e.g. {"flag": "pneumoniamnist"}')
    ap.add_argument('--img-size', type=int, default=None)
    ap.add_argument('--source', default='victim', help="the saved detector's feature source (the run's summary names it)")
    a = ap.parse_args()
    warnings.filterwarnings('ignore')
    from pathlib import Path
    import numpy as np
    from drsn_tvl.experiment import (Run, check_params, detection_data, experiment_params, fit_union, run_attack_stages,
                                     union_cols, UNION)
    from drsn_tvl.model import load_detector, make_detection_set
    run = Path(a.run)
    kw = dict(dataset=a.dataset, data_root=a.data_root, ds_kwargs=json.loads(a.ds_kwargs), out_dir=str(run / '.confidence_gap'))
    if a.img_size: kw['img_size'] = a.img_size
    r = Run(check_params(experiment_params(a.preset, **kw)), False)
    ctx = run_attack_stages(r)
    p, victim, det = r.p, ctx['victim'], load_detector(run / 'detector.pt')
    valid = detection_data(p, {'valid': ctx['asets']['valid']}, ctx['main'], source=a.source, victim=victim)   # the rows det was calibrated on
    union = fit_union(p, dict(ctx, best=det, data=valid))
    print(f"# {a.dataset}, run {run.name}, detector {det.name} on the {a.source} features; OR rule's clean FPR on valid "
          f"{100 * union['valid_fpr']:.1f} %")
    sets = {x: ctx['asets']['test'] for x in p['attacks']}
    sets.update({x: ctx['test_unseen'] for x in ctx['unseen']})
    print(f"{'attack':12s} {'n':>4s} {'detector TPR@5%':>16s} {UNION + ' TPR@5%':>11s} {'OR TPR':>7s} {'OR clean FPR':>13s}")
    for name, aset in sets.items():
        try: d = detection_data(p, {'test': aset}, [name], source=a.source, victim=victim)['test']
        except ValueError as e: print(f"{name:12s} no kept example ({str(e)[:60]})"); continue
        kept = np.flatnonzero(aset.kept(name))
        c = union_cols(union, det, d, make_detection_set(aset.images(None), aset.images(name), [name] * len(kept), kept))
        adv = d.y.numpy() != 0
        print(f"{name:12s} {adv.sum():4d} {100 * (det.p_adversarial(d.x)[adv] > det.threshold).mean():16.1f} "
              f"{c[f'{UNION} tpr_at_fpr']:11.1f} {c[f'or_{UNION} tpr_at_fpr']:7.1f} {c[f'or_{UNION} clean_fpr']:13.1f}")


if __name__ == '__main__':
    main()
