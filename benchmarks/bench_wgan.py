"""Perturbation generators (WGAN-GP, GAN, DCGAN) against PGD-10 at the same L-inf budget, after 8-bit rounding.

For one dataset: the victim of the shared recipe (`drsn_tvl.victim.train_victim`, cached), then per budget the
generators trained with one shared budget (`--epochs`, `--max-images` seeded training images of the victim's train
split; validated on its valid split; cached and resumable), then on the test split, among the images the victim
classifies correctly: the fooling rate after 8-bit rounding of each generator and of PGD-10 (both through the
package's attack registry, `run_attack`, as the experiment runs them), the mean L-inf / L2 of the rounded
perturbation in grey levels, the share of pixels whose perturbation rounded to zero, the critic's estimate on the
valid split for the generator's images and for noise at the same L-inf (`critic_report`), the attack throughput in
images/s (one generator forward pass vs PGD's 10 gradient steps, same victim, same batch of images), their ratio, FGSM's
rate and speed beside them (the gradient-informed generator's starting point), and
the generator's training cost (seconds, epochs, images).

    .venv/bin/python benchmarks/bench_wgan.py [--dataset synthetic|eye-diseases|nih-chestxray14] [--data-root ../shared/data]
        [--variants wgan,gan,dcgan] [--eps 2/255,8/255] [--epochs 10] [--max-images 200] [--max-test 300] [--max-valid 200] [--threads 2] [--json F]
        [--set inputs=image,universal=true,kappa=5]   (generator config overrides, `train_generator` keywords; `;` separates
                                                        several configs, each trained and reported: --set 'inputs=image;inputs=image+grad')
Fooling rates are given on the test split and on the generator's own training images (train_success; PGD-10's too), so
memorisation shows as the gap between the two.
Prints figures; asserts nothing.
"""
import argparse, json, time
import torch

from drsn_tvl.core import parse_value
from drsn_tvl.victim import train_victim, victim_splits
from drsn_tvl.wgan import train_generator, as_tensors, to_float
from drsn_tvl.attacks import run_attack

# the victims every agent and benchmark share (same recipe: same cache entry under ~/.cache/drsn_tvl)
VICTIMS = {
    'synthetic': dict(backbone='tf_efficientnet_lite0', img_size=64, epochs=2, seed=0),
    'eye-diseases': dict(backbone='tf_efficientnet_lite0', img_size=128, epochs=4, max_train=3000, seed=0),
    'nih-chestxray14': dict(backbone='tf_efficientnet_lite0', img_size=128, epochs=4, max_train=3000, seed=0),
}

def subset(x, y, n, seed=0, sort=True):
    "The first `n` of a seeded permutation (all when n is 0 or ≥ len), in index order when `sort`."
    if not n or n >= len(y): return x, y
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
    if sort: idx = idx.sort().values
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
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dataset', default='synthetic', choices=sorted(VICTIMS))
    ap.add_argument('--data-root', default='../shared/data')
    ap.add_argument('--variants', default='wgan,gan,dcgan')
    ap.add_argument('--eps', default='2/255,8/255', help='comma-separated L-inf budgets')
    ap.add_argument('--epochs', type=int, default=None, help='generator epochs (default: the gen_epochs setting)')
    ap.add_argument('--max-images', type=int, default=200, help='generator training images (seeded subset of train; 0: all)')
    ap.add_argument('--max-test', type=int, default=300)
    ap.add_argument('--max-valid', type=int, default=200, help='validation images (evaluated every epoch; seeded subset; 0: all)')
    ap.add_argument('--speed-images', type=int, default=64, help='images timed per attack (batch 32)')
    ap.add_argument('--threads', type=int, default=None)
    ap.add_argument('--json', default=None, help='also write the rows to this file')
    ap.add_argument('--set', default='', help="generator config overrides k=v,k=v; ';' separates configs (default: the settings)")
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    t = time.perf_counter()
    victim = train_victim(a.dataset, data_root=a.data_root, progress=False, **VICTIMS[a.dataset])
    sp = victim_splits(victim.meta['config'])
    tr, va, te = (as_tensors(sp[k]) for k in ('train', 'valid', 'test'))
    tr = subset(*tr, a.max_images); te = subset(*te, a.max_test, seed=1); va = subset(*va, a.max_valid, seed=2)
    x, y = to_float(te[0]), te[1]
    with torch.no_grad(): correct = torch.cat([victim(b).argmax(1) for b in x.split(64)]) == y
    print(f"== {a.dataset} {x.shape[-1]}px, victim {victim.arch} ({time.perf_counter() - t:.0f}s, cached if ~0): generator train "
          f"{len(tr[1])} images, valid {len(va[1])}, test {len(y)} ({int(correct.sum())} correctly classified); torch threads "
          f"{torch.get_num_threads()}", flush=True)
    xs, ys = x[:a.speed_images], y[:a.speed_images]
    xt, yt = to_float(tr[0]), tr[1]
    with torch.no_grad(): correct_t = torch.cat([victim(b).argmax(1) for b in xt.split(64)]) == yt
    configs = [{k.strip(): parse_value(v) for k, v in (kv.split('=', 1) for kv in c.split(',') if kv.strip())} for c in a.set.split(';')]
    rows = []
    for eps in [float(parse_value(e)) for e in a.eps.split(',')]:
        def fooled(name):
            torch.manual_seed(0)
            xa, ok = run_attack(name, victim, x, y, eps=eps)
            d = (xa - x)[correct].flatten(1)
            torch.manual_seed(0)
            _, okt = run_attack(name, victim, xt, yt, eps=eps)
            return dict(success=(ok & correct).sum().item() / max(int(correct.sum()), 1),
                        train_success=(okt & correct_t).sum().item() / max(int(correct_t.sum()), 1), linf=d.abs().amax(1).mean().item() * 255,
                        l2=d.norm(dim=1).mean().item() * 255, zero=(d == 0).float().mean().item())
        pgd = dict(attack='pgd-10', eps=round(eps * 255, 3), **fooled('pgd'),
                   img_per_s=rate(lambda b: run_attack('pgd', victim, b, ys[:len(b)], eps=eps), xs, reps=1))
        rows.append(pgd)
        # FGSM: the generator's starting point when gen_input = image+grad (its learned skip starts at FGSM's signs)
        rows.append(dict(attack='fgsm', eps=round(eps * 255, 3), **fooled('fgsm'),
                         img_per_s=rate(lambda b: run_attack('fgsm', victim, b, ys[:len(b)], eps=eps), xs, reps=2)))
        for v, ov in ((v, ov) for ov in configs for v in a.variants.split(',')):
            t = time.perf_counter()
            gan = train_generator(victim, tr, va, v, epochs=a.epochs, eps=eps, progress=False, **ov)
            wall = time.perf_counter() - t
            ips = rate(lambda b: run_attack(v, victim, b, ys[:len(b)], eps=eps), xs, reps=2)
            c = gan.meta.get('critic', {})
            rows.append(dict(attack=v, eps=round(eps * 255, 3), gen=f"{gan.cfg.inputs}{'+univ' if gan.cfg.universal else ''}"
                             + ''.join(f",{k}={w}" for k, w in ov.items() if k not in ('inputs', 'universal')), **fooled(v), img_per_s=ips, speedup=ips / pgd['img_per_s'],
                             train_s=sum(r['time'] for r in gan.history), epochs=gan.epoch, train_images=len(tr[1]),
                             wall_this_run=wall, critic_gen=c.get('generator'), critic_uniform=c.get('uniform'),
                             critic_gaussian=c.get('gaussian'), critic_sign=c.get('sign')))
            print(f"   eps {eps * 255:.3g}/255 {v} {ov}: valid success by epoch {[round(r.get('success', float('nan')), 3) for r in gan.history]}", flush=True)
    import pandas as pd
    df = pd.DataFrame(rows)
    print(df.to_string(index=False, float_format=lambda f: f'{f:.3f}'))
    print("success / train_success: fooled among the correctly classified test / generator-training images, after 8-bit rounding; linf/l2 in grey levels; zero: share of "
          "perturbation values that are 0 after rounding; critic_*: E[D(clean)] - E[D(x')] on the valid split (Wasserstein estimate for "
          "wgan, logit gap for gan/dcgan; smaller = closer to clean); speedup: generator img/s over PGD-10 img/s")
    if a.json:
        with open(a.json, 'w') as f: json.dump(rows, f, indent=1)

if __name__ == '__main__': main()
