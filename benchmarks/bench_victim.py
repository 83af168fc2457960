"""Victim fine-tuning time and clean test metrics on the real datasets of ../shared/data (never used by tests).

Trains (or, without --force, loads from the cache) the default CPU victim, tf_efficientnet_lite0 with the ImageNet
weights shipped on PyPI, on CLAHE images, and prints training seconds and test accuracy / precision / sensitivity / F1.
PneumoniaMNIST is compared with MedMNIST v2's ResNet-18 (28 px, trained from scratch): 85.4 % test accuracy.
Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_victim.py [--only eye,nih,nih-long,pneumonia,pneumonia64] [--epochs 3] [--force] [--threads 1] [--device auto]

Under `torchrun --nproc-per-node K` the victims train data-parallel (fastai DDP); only rank 0 prints.
"""
import argparse, os, sys, time, warnings

import torch

from drsn_tvl.victim import train_victim
from drsn_tvl.core import get_settings

PNEU = 'MedMNIST v2 ResNet-18 (28): 85.4 %'
RUNS = {   # name: (dataset, img_size, dataset kwargs, training overrides of the settings, reference)
    'eye': ('eye-diseases', 128, {}, {}, None),
    'nih': ('nih-chestxray14', 64, {}, {}, None),
    'nih-long': ('nih-chestxray14', 64, {}, dict(epochs=10, lr=3e-3), None),
    'nih128': ('nih-chestxray14', 128, {}, {}, None),
    'pneumonia': ('medmnist', 28, dict(flag='pneumoniamnist'), {}, PNEU),
    'pneumonia64': ('medmnist', 64, dict(flag='pneumoniamnist'), {}, PNEU),
}

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--only', default='eye,nih,pneumonia,pneumonia64'); ap.add_argument('--epochs', type=int, default=None)
    ap.add_argument('--lr', type=float, default=None); ap.add_argument('--backbone', default=None)
    ap.add_argument('--data-root', default=None); ap.add_argument('--force', action='store_true')
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch\'s own choice)')
    ap.add_argument('--device', default=None, help='auto, cpu, cuda or mps (default: the device setting)')
    a = ap.parse_args()
    from drsn_tvl.core import dist_env
    if dist_env()[0] != 0: sys.stdout = open(os.devnull, 'w')                # torchrun: rank 0 prints
    if a.threads: torch.set_num_threads(a.threads)
    warnings.filterwarnings('ignore')
    s = get_settings()
    print(f"# data_root {a.data_root or s.data_root}; backbone {a.backbone or s.victim_backbone}; epochs {a.epochs or s.victim_epochs}; "
          f"lr {a.lr or s.victim_lr}; batch {s.victim_batch_size}; torch threads {torch.get_num_threads()}; load average at start {os.getloadavg()[0]:.1f}")
    for name in a.only.split(','):
        ds, size, kw, over, ref = RUNS[name]
        t0 = time.time()
        v = train_victim(dataset=ds, img_size=size, epochs=a.epochs or over.get('epochs'), lr=a.lr or over.get('lr'),
                         backbone=a.backbone, data_root=a.data_root, force=a.force, progress=False, device=a.device, **kw)
        wall = time.time() - t0
        m, t = v.meta, v.meta['test']
        c = m['config']
        print(f"{name:12s} {ds}{kw.get('flag', '') and ':' + kw['flag']} @ {size}px  epochs {c['epochs']} lr {c['lr']:g}  n={m['n']}  weights={m['weights_source']}  "
              f"train {m['train_seconds']:.0f} s (wall incl. data {wall:.0f} s{', cached' if wall < m['train_seconds'] else ''})  "
              f"test acc {100 * t['accuracy']:.1f} %  precision {100 * t['precision']:.1f}  sensitivity {100 * t['sensitivity']:.1f}  "
              f"F1 {100 * t['f1']:.1f}" + (f"   [{ref}]" if ref else ''), flush=True)
    print(f"# load average at end {os.getloadavg()[0]:.1f}")

if __name__ == '__main__':
    main()
