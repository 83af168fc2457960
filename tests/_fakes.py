"Writers of tiny fake datasets in the real on-disk layouts (used by tests only)."
from pathlib import Path
import cv2
import numpy as np

def write_img(path, size=20, value=None, color=True, seed=0):
    "Write a small random (or constant) image; returns the pixels written (RGB or grey)."
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if color else (size, size)
    img = np.full(shape, value, np.uint8) if value is not None else rng.integers(0, 256, shape, dtype=np.uint8)
    ok = cv2.imwrite(str(path), img[..., ::-1] if color else img)
    assert ok, path
    return img

def eye_diseases(root, n=3, exts=('.jpg', '.jpeg', '.png')):
    for c in ('cataract', 'diabetic_retinopathy', 'glaucoma', 'normal'):
        for i in range(n): write_img(Path(root) / c / f'{c}_{i}{exts[i % len(exts)]}', seed=i)
    return Path(root)

def nih_official(root, n_patients=12, per_patient=2, test_list=False):
    import pandas as pd
    root = Path(root); rows = []
    findings = ['No Finding', 'Effusion', 'Mass|Effusion', 'No Finding', 'Nodule']
    for p in range(1, n_patients + 1):
        for k in range(per_patient):
            name = f'{p:08d}_{k:03d}.png'
            folder = root / ('images_001' if p % 2 else 'images_002') / 'images'
            write_img(folder / name, color=False, seed=p * 10 + k)
            rows.append({'Image Index': name, 'Finding Labels': findings[(p + k) % len(findings)], 'Follow-up #': k,
                         'Patient ID': p, 'Patient Age': 50, 'Patient Gender': 'M', 'View Position': 'PA'})
    pd.DataFrame(rows).to_csv(root / 'Data_Entry_2017_v2020.csv', index=False)
    if test_list:
        (root / 'test_list.txt').write_text('\n'.join(r['Image Index'] for r in rows if r['Patient ID'] <= 3))
    return root

def nih_folders(root, n=2):
    root = Path(root)
    for s in ('train', 'valid', 'test'):
        for c in ('0_normal', '1_abnormal'):
            for i in range(n): write_img(root / s / c / f'{s[:2]}{c[0]}{i:06d}_000.png', color=False, seed=i)
    return root

def aptos(root, n=15):
    import pandas as pd
    root = Path(root)
    ids = [f'{i:012x}' for i in range(n)]
    for i in ids: write_img(root / 'train_images' / f'{i}.png', seed=int(i, 16))
    pd.DataFrame({'id_code': ids, 'diagnosis': [i % 5 for i in range(n)]}).to_csv(root / 'train.csv', index=False)
    return root

def ham(root, n_lesions=14):
    import pandas as pd
    root = Path(root); rows = []
    dx = ['akiec', 'bcc', 'bkl', 'df', 'mel', 'nv', 'vasc']
    k = 0
    for l in range(n_lesions):
        for j in range(1 + l % 2):
            iid = f'ISIC_{k:07d}'; k += 1
            write_img(root / f'HAM10000_images_part_{1 + k % 2}' / f'{iid}.jpg', seed=k)
            rows.append({'lesion_id': f'HAM_{l:07d}', 'image_id': iid, 'dx': dx[l % 7], 'dx_type': 'histo', 'age': 50})
    pd.DataFrame(rows).to_csv(root / 'HAM10000_metadata.csv', index=False)
    return root

def kermany(root, n=2):
    root = Path(root) / 'chest_xray'
    for s in ('train', 'val', 'test'):
        for i in range(n):
            write_img(root / s / 'NORMAL' / f'IM-{100 + i:04d}-0001.jpeg', color=False, seed=i)
            write_img(root / s / 'PNEUMONIA' / f'person{i + 1}_bacteria_{i}.jpeg', color=False, seed=i + 5)
    return root.parent

def medmnist_npz(path, n=(8, 4, 4), size=28, channels=None, multilabel=0, n_classes=2, seed=0):
    rng = np.random.default_rng(seed); arrs = {}
    for s, k in zip(('train', 'val', 'test'), n):
        shape = (k, size, size) + ((channels,) if channels else ())
        arrs[f'{s}_images'] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrs[f'{s}_labels'] = (rng.integers(0, 2, (k, multilabel)) if multilabel else rng.integers(0, n_classes, (k, 1))).astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrs)
    return arrs

def nodule3d_npz(path, n=(6, 3, 3), size=28, seed=0):
    rng = np.random.default_rng(seed); arrs = {}
    for s, k in zip(('train', 'val', 'test'), n):
        arrs[f'{s}_images'] = rng.integers(0, 256, (k, size, size, size), dtype=np.uint8)
        arrs[f'{s}_labels'] = rng.integers(0, 2, (k, 1)).astype(np.uint8)
    np.savez(path, **arrs)
    return arrs
