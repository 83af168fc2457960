"""Scale: per-image cost and peak memory of each heavy stage (victim training step, PGD-10 attack, feature extraction,
detector fit) on one device, and the hours they project to for NIH ChestX-ray14 (112,120 images).

Each stage runs over N images (several N: `--n 64,256`) in batches of `--batch`; the inputs are made before the
measurement starts, so the peak reported is the stage's working memory above them: on a GPU
`torch.cuda.max_memory_allocated` minus the allocation at the start, on the CPU the peak resident set (VmHWM, reset
through /proc/self/clear_refs) minus the resident set at the start. A stage that streams its batches shows the same
peak at every N. Seconds per image are the wall-clock time of the N images (after one warm-up batch) divided by N.

The projections are linear in the measured per-image cost: hours = 112,120 × s/image / 3600 / devices. They are
projections, not measurements: they ignore data loading, the cache writes of other stages and the communication of
several GPUs (DDP's all-reduce; attacks and features need none). Weights are random (timing does not depend on them).
On the CPU use a small backbone (default tf_efficientnet_lite0 at 128 px); the paper preset (EfficientNet-B7 at
224 and 600 px) is for a GPU:

    .venv/bin/python benchmarks/bench_scale.py --device cpu --n 64,256 --threads 2
    .venv/bin/python benchmarks/bench_scale.py --device cuda --arch efficientnet_b7 --img-size 224 --n 256,512 --batch 32
    .venv/bin/python benchmarks/bench_scale.py --device cuda --arch efficientnet_b7 --img-size 600 --n 64,128 --batch 8

Prints figures; asserts nothing.
"""
import argparse, os, tempfile, time, warnings

import torch
import torch.nn.functional as F

NIH = 112_120


def rss_kb(field: str) -> int:
    for line in open('/proc/self/status'):
        if line.startswith(field): return int(line.split()[1])
    return 0


class Peak:
    "Peak memory above the start of the block: CUDA allocator on a GPU, the resident set (VmHWM) on the CPU."
    def __init__(self, dev): self.dev = dev
    def __enter__(self):
        if self.dev.type == 'cuda':
            torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(self.dev); self.base = torch.cuda.memory_allocated(self.dev)
        else:
            try: open('/proc/self/clear_refs', 'w').write('5'); self.how = 'VmHWM'
            except OSError: self.how = None
            self.base = rss_kb('VmRSS') * 1024
        return self
    def __exit__(self, *exc):
        if self.dev.type == 'cuda':
            torch.cuda.synchronize(); self.mib = (torch.cuda.max_memory_allocated(self.dev) - self.base) / 2**20
        else:
            self.mib = (rss_kb('VmHWM') * 1024 - self.base) / 2**20 if self.how else float('nan')


def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()


def batches(n, bs): return [(i, min(i + bs, n)) for i in range(0, n, bs)]


def stage_victim(a, dev, n):
    "fastai-free training steps of the victim (Adam, cross-entropy), bf16 autocast on a GPU as train_victim uses."
    from drsn_tvl.victim import Victim
    m = Victim(a.arch, 2, pretrained=False).to(dev).train()
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    x = torch.rand(n, 3, a.img_size, a.img_size, device=dev); y = torch.randint(0, 2, (n,), device=dev)
    def step(i, j, warm=False):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == 'cuda'):
            loss = F.cross_entropy(m(x[i:j]), y[i:j])
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return step, batches(n, a.batch)


def stage_pgd(a, dev, n):
    "PGD-10 through the registry's run_attack (fp32, 8-bit rounding and success check included)."
    from drsn_tvl.attacks import AttackConfig, run_attack
    from drsn_tvl.victim import Victim
    m = Victim(a.arch, 2, pretrained=False).to(dev).eval()
    cfg = AttackConfig.from_settings(device=a.device)
    x = torch.rand(n, 3, a.img_size, a.img_size, device=dev)
    with torch.no_grad(): y = torch.cat([m(x[i:j]).argmax(1) for i, j in batches(n, a.batch)])
    return (lambda i, j, warm=False: run_attack('pgd', m, x[i:j], y[i:j], cfg=cfg, steps=10)), batches(n, a.batch)


def stage_features(a, dev, n):
    "extract_features end to end (bf16 autocast on a GPU, fp16 shards written to a temporary cache)."
    from drsn_tvl.features import extract_features
    x = torch.rand(n, 3, a.img_size, a.img_size); y = torch.zeros(n, dtype=torch.long)
    out = tempfile.mkdtemp(prefix='bench_scale_')
    def run(i, j, warm=False):
        extract_features((x[i:j], y[i:j]), backbone=a.arch, pretrained=False, out=f"{out}/{'warm' if warm else n}",
                         batch_size=a.batch, progress=False, device=dev)
    return run, [(0, n)]


def stage_detector(a, dev, n):
    "DRSN-TVL (the settings' architecture) fitted for one epoch on N backbone maps of the chosen size."
    from drsn_tvl.features import FeatureConfig, _shapes
    from drsn_tvl.model import create_detector
    shp = _shapes(FeatureConfig.from_settings(backbone=a.arch).spec, (a.img_size, a.img_size), 'final', 0, 0)['map']
    x = torch.randn(n, *shp).half().float(); y = torch.arange(n) % 2
    def run(i, j, warm=False):
        det = create_detector('drsn_tvl', tuple(shp), ['clean', 'adversarial'], epochs=1, batch_size=a.batch, progress=False,
                              device=dev, patience=1)
        det.fit(x[i:j], y[i:j], (x[:a.batch], y[:a.batch]))
    return run, [(0, n)]


STAGES = dict(victim=('victim train step', stage_victim), pgd=('attack PGD-10', stage_pgd),
              features=('feature extraction', stage_features), detector=('detector fit (1 epoch)', stage_detector))


def measure(a, dev, name, n):
    "(s/image, peak MiB) of stage `name` over `n` images, in this (fresh) process: inputs and model made first, then the peak window (warm-up + timed run)."
    fn, work = STAGES[name][1](a, dev, n)
    sync(dev)
    with Peak(dev) as pk:
        fn(0, min(a.batch, n) if len(work) > 1 else min(2 * a.batch, n), True); sync(dev)       # warm-up (not timed)
        t0 = time.perf_counter()
        for i, j in work: fn(i, j)
        sync(dev); secs = time.perf_counter() - t0
    return secs / n, pk.mib


def measure_fresh(argv, name, n):
    "`measure` in a fresh Python process (no memory kept by an earlier stage), parsed from its last output line."
    import json, subprocess, sys
    r = subprocess.run([sys.executable, __file__, *argv, '--one', f'{name}:{n}'], capture_output=True, text=True)
    if r.returncode != 0: raise SystemExit(f"stage {name} at N={n} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='cpu', help='auto, cpu, cuda or mps')
    ap.add_argument('--arch', default='tf_efficientnet_lite0', help='victim and feature backbone (a timm / feature-registry name)')
    ap.add_argument('--img-size', type=int, default=128); ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--n', default='64,256', help='image counts to measure at (peak memory should not grow with N)')
    ap.add_argument('--stages', default='victim,pgd,features,detector')
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    ap.add_argument('--one', default=None, help=argparse.SUPPRESS)       # internal: STAGE:N in this process, print JSON
    import sys
    argv = sys.argv[1:]
    a = ap.parse_args()
    from drsn_tvl.core import resolve_device
    dev = resolve_device(a.device, key='--device')
    if a.threads: torch.set_num_threads(a.threads)
    warnings.filterwarnings('ignore')
    torch.manual_seed(0)
    if a.one:
        import json
        name, n = a.one.split(':'); print(json.dumps(measure(a, dev, name, int(n)))); return
    ns = [int(v) for v in a.n.split(',')]
    what = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'{torch.get_num_threads()} CPU threads'
    print(f"# {a.arch} at {a.img_size} px, batch {a.batch}, random weights; device {dev} ({what}); torch {torch.__version__}; "
          f"load average at start {os.getloadavg()[0]:.1f}")
    print(f"# each stage and N in a fresh process; peak = working memory above its inputs and model "
          f"({'torch.cuda.max_memory_allocated' if dev.type == 'cuda' else 'VmHWM - VmRSS'}), MiB; peak ratio = peak at the largest N / at the smallest")
    hdr = ''.join(f"{f'N={n} img/s':>12s}{f'peak MiB':>10s}" for n in ns)
    print(f"{'stage':24s}{hdr}{'peak ratio':>11s}")
    res = {}
    for name in a.stages.split(','):
        row = [measure_fresh(argv, name, n) for n in ns]
        res[name] = min(r[0] for r in row)                          # the best per-image cost of the Ns
        ratio = row[-1][1] / row[0][1] if row[0][1] > 0 else float('nan')
        print(f"{STAGES[name][0]:24s}" + ''.join(f"{1 / s:12.1f}{m:10.0f}" for s, m in row) + f"{ratio:11.2f}", flush=True)
    print(f"\n# PROJECTION (linear in the measured s/image, not measured): one pass over NIH ChestX-ray14's {NIH:,} images, hours")
    units = [(1, '1 GPU'), (2, '2 GPUs'), (8, '8 GPUs')] if dev.type == 'cuda' else [(1, f'{torch.get_num_threads()} CPU threads')]
    print(f"{'stage':24s}{'s/image':>10s}" + ''.join(f'{u:>14s}' for _, u in units))
    for name, s in res.items():
        print(f"{STAGES[name][0]:24s}{s:10.4f}" + ''.join(f'{NIH * s / 3600 / k:14.2f}' for k, _ in units))
    if set(res) == set(STAGES):
        # the pipeline: victim 3 epochs on ~70 % (train), PGD-10 on every image (FGSM ~1/10 of it, noise ~0), features of
        # clean + 3 attacks, detector 30 epochs on 2 maps per image (clean + one adversarial)
        tot = NIH * (3 * 0.7 * res['victim'] + 1.1 * res['pgd'] + 4 * res['features'] + 30 * 2 * res['detector'])
        print(f"{'pipeline (see note)':24s}{tot / NIH:10.4f}" + ''.join(f'{tot / 3600 / k:14.2f}' for k, _ in units))
        print("# pipeline = 3 victim epochs x 70 % train + 1.1 x PGD-10 (fgsm, pgd, noise) + 4 feature passes (clean + 3 attacks) "
              "+ 30 detector epochs x 2 maps per image")
    print(f"# load average at end {os.getloadavg()[0]:.1f}")


if __name__ == '__main__':
    main()
