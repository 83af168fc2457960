"""Perturbation generators (WGAN-GP, GAN, DCGAN) against PGD and FGSM at the same L-inf budget.

For each dataset: a victim from `drsn_tvl.attacks.train_victim` (cached), the three generators trained on the
victim's training split (validated on its valid split, cached and resumable), then on the test split: clean
accuracy, attack success rate among correctly classified images (after 8-bit rounding), mean L-inf / L2 of the
perturbation in grey levels, generator training time, and attack throughput in images/s (one generator forward pass
vs PGD's `pgd_steps` gradient steps, batch 32, same machine and thread count).

Datasets: the embedded synthetic set always; the shared real subsets when found under --data-root
($DRSN_TVL_DATA_ROOT, default ../shared/data). Prints figures; asserts nothing.
    .venv/bin/python benchmarks/bench_wgan.py [--datasets synthetic:64,nih-chestxray14:64,eye-diseases:64]
        [--variants wgan,gan,dcgan] [--epochs 20] [--max-train 0] [--max-test 400] [--baselines fgsm,pgd] [--threads 1] [--eps 2/255]
"""
import argparse, json, time
import torch

from drsn_tvl.core import get_settings, parse_value
from drsn_tvl.data import find_root
from drsn_tvl.victim import train_victim, victim_splits
from drsn_tvl.wgan import train_generator, as_tensors, evaluate_attack, round_to_8bit, to_float

def subset(x, y, n, seed=0):
    "The first `n` of a seeded permutation (all when n is 0 or ≥ len)."
    if not n or n >= len(y): return x, y
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]

def rate(fn, x, bs=32, reps=2):
    "Best-of-`reps` images/s of fn over x in batches of bs."
    best = 0.
    for _ in range(reps):
        t = time.perf_counter()
        for b in x.split(bs): fn(b)
        best = max(best, len(x) / (time.perf_counter() - t))
    return best

def main():
    s = get_settings()
    ap = argparse.ArgumentParser()
    ap.add_argument('--datasets', default='synthetic:64,nih-chestxray14:64,eye-diseases:64')
    ap.add_argument('--variants', default='wgan,gan,dcgan')
    ap.add_argument('--epochs', type=int, default=None, help='generator epochs (default: gen_epochs setting)')
    ap.add_argument('--max-train', type=int, default=0, help='cap on generator training images (0: all)')
    ap.add_argument('--max-test', type=int, default=400)
    ap.add_argument('--baselines', default='fgsm,pgd', help="reference attacks at the same budget ('' to skip)")
    ap.add_argument('--threads', type=int, default=None)
    ap.add_argument('--eps', default=None, help='L-inf budget, e.g. 2/255 (default: eps setting)')
    ap.add_argument('--data-root', default=None)
    ap.add_argument('--json', default=None, help='also write the rows to this file')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    eps = float(parse_value(a.eps)) if a.eps else s.eps
    data_root = a.data_root or s.data_root
    print(f"eps {eps * 255:.3g}/255, torch threads {torch.get_num_threads()}, data_root {data_root}, "
          f"PGD steps {s.pgd_steps} alpha {s.pgd_alpha * 255:.3g}/255", flush=True)
    import torchattacks
    rows = []
    for spec in a.datasets.split(','):
        name, size = spec.split(':') if ':' in spec else (spec, s.img_size)
        size = int(size)
        if name != 'synthetic':
            try: find_root(name, data_root=data_root)
            except FileNotFoundError: print(f"== {name}: not found under {data_root}, skipped"); continue
        t = time.perf_counter()
        victim = train_victim(dataset=name, img_size=size, data_root=data_root, progress=False)
        vt = time.perf_counter() - t
        sp = victim_splits(victim.meta['config'])
        tr, va, te = (as_tensors(sp[k]) for k in ('train', 'valid', 'test'))
        tr = subset(*tr, a.max_train); te = subset(*te, a.max_test)
        print(f"== {name} {size}px: victim {victim.arch} ({victim.source}), {vt:.0f}s (cached if ~0), "
              f"train {len(tr[1])} valid {len(va[1])} test {len(te[1])}, classes {victim.meta['classes']}", flush=True)
        xte, yte = to_float(te[0]), te[1]

        def add(attack, adv, secs_train, ips, extra=None):
            m = evaluate_attack(victim, xte, yte, adv)
            rows.append(dict(dataset=name, img=size, attack=attack, clean_acc=m['clean_acc'], success=m['success'],
                             linf=m['linf'] * 255, l2=m['l2'] * 255, train_s=secs_train, img_per_s=ips, **(extra or {})))
            r = rows[-1]
            print(f"   {attack:6s} clean acc {r['clean_acc']:.3f}  success {r['success']:.3f}  L∞ {r['linf']:.2f}  L2 {r['l2']:.2f} "
                  f"(grey levels)  train {secs_train:7.1f}s  attack {ips:8.1f} img/s", flush=True)

        for atk in [b for b in a.baselines.split(',') if b]:
            a_ = (torchattacks.FGSM(victim, eps=eps) if atk == 'fgsm' else
                  torchattacks.PGD(victim, eps=eps, alpha=s.pgd_alpha, steps=s.pgd_steps, random_start=True))
            torch.manual_seed(0)
            adv = torch.cat([round_to_8bit(a_(b, l), b, eps) for b, l in zip(xte.split(32), yte.split(32))])
            add(atk, adv, 0., rate(lambda b: a_(b, yte[:len(b)]), xte[:128], reps=1))
        for v in a.variants.split(','):
            t = time.perf_counter()
            gan = train_generator(victim, tr, va, v, epochs=a.epochs, eps=eps, progress=False)
            wall = time.perf_counter() - t
            secs = sum(r['time'] for r in gan.history)
            with torch.no_grad(): ips = rate(lambda b: gan.G.eval().attack(b), xte, reps=3)
            h = gan.history[-1]
            add(v, gan.attack(xte), secs, ips, dict(epochs=gan.epoch, valid_success=h.get('success'), critic_gap=h['critic_gap'],
                                                   wall_this_run=wall))
            print(f"          valid success by epoch: {[round(r.get('success', float('nan')), 3) for r in gan.history]}", flush=True)
    if a.json:
        with open(a.json, 'w') as f: json.dump(rows, f, indent=1)
    if rows:
        import pandas as pd
        print(pd.DataFrame(rows)[['dataset', 'img', 'attack', 'clean_acc', 'success', 'linf', 'l2', 'train_s', 'img_per_s']]
              .to_string(index=False, float_format=lambda v: f'{v:.3f}'))

if __name__ == '__main__': main()
