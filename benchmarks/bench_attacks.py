"""Attack throughput: the drsn_tvl registry (`run_attack`) against the direct torchattacks call, same model and batch.

The registry adds input checks (one forward on one image), seeding, 8-bit rounding and the success re-check (one
forward on the batch); the direct call does none of these. Timings are interleaved (registry, direct, registry, ...)
and the median of `--repeats` runs is used. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_attacks.py [--img-size 64] [--batch 32] [--repeats 3] [--attacks fgsm,pgd,cw,deepfool] [--threads 1]

`--vs-torchattacks` (issue 14): FGSM and PGD-10 through the registry against bare torchattacks on the same victim,
images and batch, timed pair by pair (registry, direct, registry, direct, ...); the ratio of each pair is
direct time / registry time (registry throughput as a fraction of torchattacks'), and the median over the pairs is
checked against the 0.95 target, both against the bare call and against the bare call plus the 8-bit rounding and
success forward that the registry returns (the same work).

    .venv/bin/python benchmarks/bench_attacks.py --vs-torchattacks [--pairs 15] [--batch 32] [--img-size 64] [--threads 2]
"""
import argparse, os, statistics, time, warnings

import torch
import torchattacks

from drsn_tvl.attacks import GreyInput, run_attack
from drsn_tvl.victim import Victim

DIRECT = {
    'fgsm': lambda m, p: torchattacks.FGSM(m, eps=p['eps']),
    'pgd': lambda m, p: torchattacks.PGD(m, eps=p['eps'], alpha=p['alpha'], steps=p['steps'], random_start=p['random_start']),
    'cw': lambda m, p: torchattacks.CW(m, c=p['c'], kappa=p['kappa'], steps=p['steps'], lr=p['lr']),
    'deepfool': lambda m, p: torchattacks.DeepFool(m, steps=p['steps'], overshoot=p['overshoot']),
}

def vs_torchattacks(model, x, y, pairs: int, grey: bool):
    "Median per-pair throughput ratio registry / torchattacks for FGSM and PGD-10; prints a line per attack, returns {attack: ratios}."
    from drsn_tvl.attacks import AttackConfig, get_attack
    cfg = AttackConfig.from_settings()                  # built once, as an entry point does: no settings read inside the timing
    out = {}
    print(f"{'attack':8s} {'pairs':>5s} {'direct s':>9s} {'registry s':>10s} {'ratio':>6s} {'vs direct+check':>15s}  target 0.95")
    for name, extra in (('fgsm', {}), ('pgd', dict(steps=10))):
        p = get_attack(name).resolve(cfg, **extra)
        direct = DIRECT[name](GreyInput(model).eval() if grey else model, p)
        def reg(): return run_attack(name, model, x, y, cfg=cfg, **extra)
        def bare(): return direct(x, y)
        def checked():
            adv = direct(x, y)
            with torch.no_grad(): return model((adv * 255).round() / 255).argmax(1) != y
        reg(); bare(); checked()                          # warm-up
        tr, td, tc = [], [], []
        for i in range(pairs):
            for f, t in ((reg, tr), (bare, td), (checked, tc)) if i % 2 == 0 else ((bare, td), (checked, tc), (reg, tr)):
                t0 = time.perf_counter(); f()
                if x.is_cuda: torch.cuda.synchronize()
                t.append(time.perf_counter() - t0)
        r = [d / g for d, g in zip(td, tr)]; rc = [c / g for c, g in zip(tc, tr)]
        out[name] = r
        m, mc = statistics.median(r), statistics.median(rc)
        print(f"{name + ('-10' if name == 'pgd' else ''):8s} {pairs:5d} {statistics.median(td):9.4f} {statistics.median(tr):10.4f} {m:6.3f} "
              f"{mc:15.3f}  {'ok' if m >= 0.95 else 'BELOW'} (bare) / {'ok' if mc >= 0.95 else 'BELOW'} (same work)", flush=True)
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--arch', default='tf_efficientnet_lite0'); ap.add_argument('--img-size', type=int, default=64)
    ap.add_argument('--batch', type=int, default=32); ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--attacks', default='fgsm,pgd,cw,deepfool')
    ap.add_argument('--grey', action='store_true', help='grey images (3 equal channels); both sides attack through GreyInput')
    ap.add_argument('--cw-steps', type=int, default=10); ap.add_argument('--deepfool-steps', type=int, default=3)
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch\'s own choice)')
    ap.add_argument('--vs-torchattacks', action='store_true', help='FGSM and PGD-10: registry / bare torchattacks, median of pair-by-pair ratios')
    ap.add_argument('--pairs', type=int, default=15, help='--vs-torchattacks: interleaved timing pairs')
    ap.add_argument('--device', default='cpu', help='cpu, cuda, mps or auto')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    warnings.filterwarnings('ignore')
    torch.manual_seed(0)
    from drsn_tvl.core import resolve_device
    dev = resolve_device(a.device, key='--device')
    model = Victim(a.arch, 2).eval().to(dev)
    x = torch.rand(a.batch, 1 if a.grey else 3, a.img_size, a.img_size).expand(-1, 3, -1, -1).contiguous()
    x = (x * 255).round() / 255
    x = x.to(dev)
    with torch.no_grad(): y = model(x).argmax(1)
    print(f"# {a.arch} ({model.source}), batch {a.batch} {'grey ' if a.grey else ''}images at {a.img_size} px, torch threads {torch.get_num_threads()}, "
          f"load average at start {os.getloadavg()[0]:.1f}, device {dev}")
    if a.vs_torchattacks:
        vs_torchattacks(model, x, y, a.pairs, a.grey)
        print(f"# load average at end {os.getloadavg()[0]:.1f}")
        return
    print("# img/s; ratio = registry / direct torchattacks call. 'direct+check' adds the 8-bit rounding and success forward the registry returns")
    print(f"{'attack':10s} {'direct':>8s} {'registry':>9s} {'ratio':>6s} {'reg. no 8-bit':>14s} {'ratio':>6s} {'direct+check':>13s} {'ratio':>6s}")
    from drsn_tvl.attacks import get_attack
    for name in a.attacks.split(','):
        extra = dict(cw=dict(steps=a.cw_steps), deepfool=dict(steps=a.deepfool_steps)).get(name, {})
        p = get_attack(name).resolve(**extra)
        direct = DIRECT[name](GreyInput(model).eval() if a.grey else model, p)   # grey: the same computation the registry does
        t = {'direct': [], 'reg': [], 'reg_raw': [], 'direct_ok': []}
        run_attack(name, model, x, y, **extra); direct(x, y)                  # warm-up
        for _ in range(a.repeats):
            t0 = time.perf_counter(); run_attack(name, model, x, y, **extra); t['reg'].append(time.perf_counter() - t0)
            t0 = time.perf_counter(); direct(x, y); t['direct'].append(time.perf_counter() - t0)
            t0 = time.perf_counter(); run_attack(name, model, x, y, round_8bit=False, **extra); t['reg_raw'].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            adv = direct(x, y)
            with torch.no_grad(): ok = model((adv * 255).round() / 255).argmax(1) != y      # what the registry returns too
            t['direct_ok'].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in t.items()}
        ips = {k: a.batch / v for k, v in med.items()}
        print(f"{name:10s} {ips['direct']:8.1f} {ips['reg']:9.1f} {ips['reg'] / ips['direct']:6.3f} {ips['reg_raw']:14.1f} "
              f"{ips['reg_raw'] / ips['direct']:6.3f} {ips['direct_ok']:13.1f} {ips['reg'] / ips['direct_ok']:6.3f}   params {extra or 'settings'}", flush=True)
    print(f"# load average at end {os.getloadavg()[0]:.1f}")

if __name__ == '__main__':
    main()
