"""Attack throughput: the drsn_tvl registry (`run_attack`) against the direct torchattacks call, same model and batch.

The registry adds input checks (one forward on one image), seeding, 8-bit rounding and the success re-check (one
forward on the batch); the direct call does none of these. Timings are interleaved (registry, direct, registry, ...)
and the median of `--repeats` runs is used. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_attacks.py [--img-size 64] [--batch 32] [--repeats 3] [--attacks fgsm,pgd,cw,deepfool] [--threads 1]
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

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--arch', default='tf_efficientnet_lite0'); ap.add_argument('--img-size', type=int, default=64)
    ap.add_argument('--batch', type=int, default=32); ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--attacks', default='fgsm,pgd,cw,deepfool')
    ap.add_argument('--grey', action='store_true', help='grey images (3 equal channels); both sides attack through GreyInput')
    ap.add_argument('--cw-steps', type=int, default=10); ap.add_argument('--deepfool-steps', type=int, default=3)
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch\'s own choice)')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    warnings.filterwarnings('ignore')
    torch.manual_seed(0)
    model = Victim(a.arch, 2).eval()
    x = torch.rand(a.batch, 1 if a.grey else 3, a.img_size, a.img_size).expand(-1, 3, -1, -1).contiguous()
    x = (x * 255).round() / 255
    with torch.no_grad(): y = model(x).argmax(1)
    print(f"# {a.arch} ({model.source}), batch {a.batch} {'grey ' if a.grey else ''}images at {a.img_size} px, torch threads {torch.get_num_threads()}, "
          f"load average at start {os.getloadavg()[0]:.1f}")
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
