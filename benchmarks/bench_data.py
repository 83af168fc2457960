"""Throughput of the data stage: decode + resize, and CLAHE, in images/s.

Uses the shared Kaggle eye-disease set when `../shared/data/eye-diseases` (or $DRSN_TVL_DATA_ROOT) exists,
else the embedded synthetic phantoms. Prints figures; asserts nothing.
    .venv/bin/python benchmarks/bench_data.py [--n 1000] [--img-size 224]
"""
import argparse, time
import numpy as np
import cv2
from drsn_tvl.data import get_dataset, read_image, resize, DATASETS, find_root
from drsn_tvl.core import get_settings
from drsn_tvl.clahe import CLAHE

def timed(fn, n, reps=3):
    "Run fn over range(n) `reps` times; the best rate (the machine may be shared) in img/s."
    best = 0
    for _ in range(reps):
        t = time.perf_counter(); out = [fn(i) for i in range(n)]; best = max(best, n / (time.perf_counter() - t))
    return out, best

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--n', type=int, default=1000); ap.add_argument('--img-size', type=int, default=224)
    a = ap.parse_args()
    try: find_root('eye-diseases'); name = 'eye-diseases'
    except FileNotFoundError: name = 'synthetic'
    ds = get_dataset(name, None, img_size=a.img_size)
    n = min(a.n, len(ds))
    print(f"dataset {name} ({len(ds)} images, root {ds.root}), {n} timed, img_size {a.img_size}, cv2 threads {cv2.getNumThreads()}")
    _, r_load = timed(ds.raw, n)
    if ds.array is None:
        _, r_decode = timed(lambda i: read_image(ds.index['item'].iat[i]), n)
        print(f"decode only (cv2.imread + RGB):   {r_decode:8.1f} img/s")
    print(f"decode + resize (MedicalDataset):  {r_load:8.1f} img/s")
    imgs = [ds.raw(i) for i in range(n)]
    tfm = CLAHE()
    _, r_clahe = timed(lambda i: tfm(imgs[i]), n)
    op = cv2.createCLAHE(tfm.clip_limit, (tfm.tile_grid, tfm.tile_grid))
    grey = name == 'synthetic'
    def raw_call(i):
        if grey: return op.apply(np.ascontiguousarray(imgs[i][..., 0]))
        lab = cv2.cvtColor(imgs[i], cv2.COLOR_RGB2LAB); lab[..., 0] = op.apply(np.ascontiguousarray(lab[..., 0]))
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    _, r_raw = timed(raw_call, n)
    print(f"CLAHE ({tfm}):  {r_clahe:8.1f} img/s")
    print(f"raw OpenCV calls, same images:    {r_raw:8.1f} img/s   (ratio ours/raw {r_clahe / r_raw:.2f})")
    _, r_full = timed(lambda i: ds[i], min(n, 300))
    print(f"full item (decode+resize+tensor): {r_full:8.1f} img/s")

if __name__ == '__main__': main()
