"""Benchmarks of drsn_tvl.features (prints figures, asserts nothing).

1. throughput: `extract_features` (DataLoader, [0,1] -> normalise, channels_last, fp16, shard writes, hashes)
   against a bare timm `forward_features` loop on the same in-memory batches, interleaved in one run;
   lite0 and EfficientNet-B7 at 224 px.
2. memory: peak RSS (VmHWM) of one extraction of 1k vs 4k images (a fresh subprocess per run), streaming from a
   lazy source (synthetic phantoms drawn on demand).
3. projection: time and disk for NIH ChestX-ray14 (112,120 images) with B7 at 224 and 600 px, from the measured
   per-image cost and bytes.
4. sources (issue 14): the cost of the victim's own feature maps (feature_source = victim / both) against the attack
   stage that precedes them: FGSM + PGD (10 steps) + noise on n images through the lite0 victim at 128 px, then the
   features of the clean and the three adversarial versions (4n images, an upper bound: only successful examples are
   extracted in the pipeline). A randomly initialised victim: speed does not depend on the weights.

Run:  .venv/bin/python benchmarks/bench_features.py [--only throughput,rss,projection,sources] [--threads N]
On a CPU shared with other jobs, --threads 1 gives far steadier numbers (no OpenMP threads waiting for each other).
Images: the real eye-diseases set (224 px) under the data_root setting when present, else synthetic phantoms.
B7 weights come from the hub or a file where available; offline they are random (speed does not depend on them).
"""
import argparse, json, os, resource, shutil, subprocess, sys, tempfile, time, warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings('ignore')
NIH_N = 112_120


def images(n, size):
    "n uint8 RGB images at size px: real eye-diseases images when present, else synthetic phantoms."
    from drsn_tvl.data import get_dataset
    from drsn_tvl.core import DataNotFound
    try: ds, what = get_dataset('eye-diseases', None, img_size=size), 'eye-diseases (real)'
    except (DataNotFound, FileNotFoundError):
        ds, what = get_dataset('synthetic', None, img_size=size), 'synthetic'
    idx = np.random.default_rng(0).permutation(len(ds))[:n]
    return np.stack([ds.image(int(i)) for i in idx]), ds.labels[idx], what


def throughput(name, size, n, bs, rounds):
    import timm
    from drsn_tvl.features import create_extractor, extract_features, ArraySource
    u8, lab, what = images(n, size)
    fx = create_extractor(name, size=0)
    arch = fx.spec.arch
    bare = {}
    for fmt in ('nchw', 'channels_last'):
        m = timm.create_model(arch, num_classes=0).eval(); m.load_state_dict(fx.model.state_dict())
        bare[fmt] = m.to(memory_format=torch.channels_last) if fmt == 'channels_last' else m
    src = ArraySource(u8, lab)
    mean, std = fx.mean, fx.std
    batches = [((torch.from_numpy(u8[i:i + bs]).permute(0, 3, 1, 2).float() / 255 - mean) / std) for i in range(0, n, bs)]
    batches = {'nchw': [b.contiguous() for b in batches],
               'channels_last': [b.contiguous(memory_format=torch.channels_last) for b in batches]}
    with torch.inference_mode():                       # warm-up: one batch through each
        for f, m in bare.items(): m.forward_features(batches[f][0])
        fx(torch.from_numpy(u8[:bs]).permute(0, 3, 1, 2).float() / 255)
    fx.weights_sha()                                   # hashed once per extractor (part of the cache key)
    res = {k: [] for k in ('bare nchw', 'bare channels_last', 'extract_features')}
    steady = {k: [] for k in res}
    tmp = Path(tempfile.mkdtemp(prefix='bench_feat_'))
    try:
        for r in range(rounds):
            for f, m in bare.items():
                ts = [time.perf_counter()]
                with torch.inference_mode():
                    for b in batches[f]: m.forward_features(b); ts.append(time.perf_counter())
                res[f'bare {f}'].append(n / (ts[-1] - ts[0])); steady[f'bare {f}'].append((n - bs) / (ts[-1] - ts[1]))
            ts = []
            t0 = time.perf_counter()
            extract_features(src, extractor=fx, out=tmp / f'r{r}', batch_size=bs, shard_size=max(bs, n // 2),
                             progress=False, on_batch=lambda d, t: ts.append(time.perf_counter()))
            t1 = time.perf_counter()
            res['extract_features'].append(n / (t1 - t0)); steady['extract_features'].append((n - bs) / (ts[-1] - ts[0]))
            shutil.rmtree(tmp / f'r{r}')
    finally: shutil.rmtree(tmp, ignore_errors=True)
    best = {k: max(v) for k, v in res.items()}; best_s = {k: max(v) for k, v in steady.items()}
    print(f"\n== throughput: {name} ({arch}, weights: {fx.source}) at {size} px, {n} images of {what}, batch {bs}, "
          f"{rounds} interleaved rounds, torch threads {torch.get_num_threads()}, load avg {os.getloadavg()[0]:.1f}")
    for k in res:
        print(f"  {k:20s} end-to-end best {best[k]:7.2f} img/s (all rounds: {', '.join(f'{v:.2f}' for v in res[k])});"
              f"  steady state (after batch 1) best {best_s[k]:7.2f} img/s")
    for f in ('nchw', 'channels_last'):
        print(f"  ratio extract_features / bare {f:13s}: end-to-end {best['extract_features'] / best[f'bare {f}']:.2f}, "
              f"steady state {best_s['extract_features'] / best_s[f'bare {f}']:.2f}")
    return dict(name=name, size=size, sec_per_img=1 / best_s['extract_features'], fx=fx)


def peak_rss_mib():
    "This process's peak resident set (VmHWM, MiB). Not ru_maxrss: Linux carries that across fork+exec from the parent."
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmHWM:'): return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(n, size, layer):
    "One extraction of n lazily drawn synthetic images; prints peak RSS (MiB) before and after as JSON."
    os.environ['DRSN_TVL_SYNTHETIC_N'] = str(n)
    from drsn_tvl.data import get_dataset
    from drsn_tvl.features import create_extractor, extract_features
    ds = get_dataset('synthetic', None, img_size=size)
    fx = create_extractor('tf_efficientnet_lite0', layer=layer)
    with torch.inference_mode(): fx(ds[0][0][None])
    before = peak_rss_mib()
    tmp = tempfile.mkdtemp(prefix='bench_rss_')
    try:
        t = time.perf_counter()
        fs = extract_features(ds, extractor=fx, out=f'{tmp}/c', batch_size=32, shard_size=1024, progress=False,
                              source_key=f'synthetic-{n}-{size}')
        dt = time.perf_counter() - t
        after = peak_rss_mib()
        disk = sum(p.stat().st_size for p in Path(f'{tmp}/c').iterdir()) / 2**20
        print(json.dumps(dict(n=n, size=size, before=before, after=after, seconds=dt, disk_mib=disk,
                              map=list(fs.maps.shape[1:]), shards=len(fs.manifest['shards']))))
    finally: shutil.rmtree(tmp, ignore_errors=True)


def rss(size=64, layer='final'):
    print(f"\n== memory: peak RSS of one extraction (lite0, {layer} map at {size} px, synthetic phantoms drawn on demand, "
          f"batch 32, shards of 1024), a fresh process per run")
    for n in (1000, 4000):
        r = subprocess.run([sys.executable, __file__, '--rss-child', str(n), '--size', str(size), '--layer', layer,
                            '--threads', str(torch.get_num_threads())], capture_output=True, text=True)
        if r.returncode: print(r.stdout, r.stderr[-2000:]); continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"  N={d['n']:5d}: peak RSS before extraction {d['before']:7.1f} MiB, after {d['after']:7.1f} MiB "
              f"(+{d['after'] - d['before']:.1f}); cache on disk {d['disk_mib']:.1f} MiB in {d['shards']} shards "
              f"(map {tuple(d['map'])}); {d['n'] / d['seconds']:.1f} img/s incl. drawing the phantoms")


def projection(b7_224, n600=4, bs600=2):
    from drsn_tvl.features import extract_features, ArraySource, feature_shapes
    fx = b7_224['fx'] if b7_224 else None
    rows, disk = [], {}
    for size in (224, 600):
        if size == 224 and b7_224: spi = b7_224['sec_per_img']; how = 'steady state of the throughput run'
        else:
            from drsn_tvl.features import create_extractor
            fx = fx or create_extractor('efficientnet_b7')
            u8, lab, _ = images(n600 + bs600, size)
            src = ArraySource(u8, lab)
            with torch.inference_mode(): fx(torch.from_numpy(u8[:bs600]).permute(0, 3, 1, 2).float() / 255)   # warm-up
            tmp = tempfile.mkdtemp(prefix='bench_b7_')
            ts = []
            extract_features(src, extractor=fx, out=f'{tmp}/c', batch_size=bs600, progress=False,
                             on_batch=lambda d, t: ts.append(time.perf_counter()))
            disk[size] = sum(p.stat().st_size for p in Path(f'{tmp}/c').glob('shard-*.npy')) / len(u8)
            shutil.rmtree(tmp, ignore_errors=True)
            spi = (ts[-1] - ts[0]) / (len(u8) - bs600); how = f'{len(u8) - bs600} images after a warm-up batch, batch {bs600}'
        for pool in ((0,) if size == 224 else (0, 7)):          # at 224 px the map is 7×7 already
            sh = feature_shapes('efficientnet_b7', size, pool=pool)
            b = 2 * (np.prod(sh['map']) + sh['vec'][0]) + 8
            rows.append((size, pool, sh['map'], spi, b, how))
    print(f"\n== projection: NIH ChestX-ray14, {NIH_N:,} images, EfficientNet-B7 final map + pooled vector in fp16, "
          f"this CPU ({torch.get_num_threads()} threads)")
    print("| input | pool | map per image | measured s/img (CPU) | projected CPU time | bytes/img | projected disk |")
    print("|---|---|---|---|---|---|---|")
    for size, pool, m, spi, b, how in rows:
        print(f"| {size} px | {pool or 'none'} | {'×'.join(map(str, m))} | {spi:.3f} ({how}) | "
              f"{NIH_N * spi / 3600:,.1f} h ({NIH_N * spi / 86400:.1f} days) | {b / 1024:,.1f} KiB | {NIH_N * b / 2**30:,.1f} GiB |")
    for size, b in disk.items():
        print(f"  measured on disk at {size} px: {b / 1024:,.1f} KiB per image in the shard .npy files (incl. headers)")


def sources(n=64, size=128, bs=32):
    "Seconds of the attack stage vs the features of each source on the same images (clean + 3 attacks)."
    from drsn_tvl.attacks import run_attack
    from drsn_tvl.features import create_extractor, extract_features
    from drsn_tvl.victim import Victim
    u8, lab, what = images(n, size)
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255
    torch.manual_seed(0)
    victim = Victim('tf_efficientnet_lite0', 4, pretrained=False).eval()
    y = torch.as_tensor(lab, dtype=torch.long) % 4
    with torch.no_grad(): victim(x[:bs])                                   # warm-up
    t0, adv = time.perf_counter(), []
    for name, kw in (('fgsm', dict(eps=2 / 255)), ('pgd', dict(eps=2 / 255, alpha=0.5 / 255, steps=10)), ('noise', dict(std=8 / 255))):
        adv.append(torch.cat([run_attack(name, victim, x[i:i + bs], y[i:i + bs], seed=0, **kw)[0] for i in range(0, n, bs)]))
    t_attack = time.perf_counter() - t0
    allx = torch.cat([x] + adv)
    print(f"\n== sources: {n} images of {what} at {size} px, lite0 victim; attack stage (fgsm + pgd 10 steps + noise, batch {bs}) "
          f"{t_attack:.1f} s; features of the {len(allx)} clean + adversarial images (threads {torch.get_num_threads()}, "
          f"load avg {os.getloadavg()[0]:.1f})")
    tmp = Path(tempfile.mkdtemp(prefix='bench_src_'))
    try:
        for src in ('backbone', 'victim', 'both'):
            fx = create_extractor('tf_efficientnet_lite0', source=src, victim=victim, grid=4).eval()
            with torch.inference_mode(): fx(x[:bs])                        # warm-up
            t0 = time.perf_counter()
            fs = extract_features((allx, np.zeros(len(allx), np.int64)), extractor=fx, out=tmp / src, batch_size=bs, progress=False)
            dt = time.perf_counter() - t0
            print(f"  {src:8s}: map {tuple(fs.maps.shape[1:])}, {dt:6.2f} s ({len(allx) / dt:6.1f} img/s) = "
                  f"{100 * dt / t_attack:5.1f} % of the attack stage")
    finally: shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--only', default='throughput,rss,projection')
    p.add_argument('--rss-child', type=int); p.add_argument('--size', type=int, default=64); p.add_argument('--layer', default='final')
    p.add_argument('--threads', type=int, help='torch intra-op threads (default: torch\'s)')
    p.add_argument('--b7-n', type=int, default=24); p.add_argument('--sources-n', type=int, default=64); p.add_argument('--lite-n', type=int, default=160)
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    if a.rss_child: rss_child(a.rss_child, a.size, a.layer); sys.exit(0)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, threads {torch.get_num_threads()}, load avg {os.getloadavg()}")
    only, b7 = a.only.split(','), None
    if 'throughput' in only:
        throughput('tf_efficientnet_lite0', 224, a.lite_n, 32, 3)
        b7 = throughput('efficientnet_b7', 224, a.b7_n, 8, 3)
    if 'rss' in only: rss(a.size, a.layer)
    if 'projection' in only: projection(b7)
    if 'sources' in only: sources(a.sources_n)
