"Dataset registry: every real loader on tiny fake files in its published layout, errors, and split properties."
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch

from drsn_tvl.data import DATASETS, assign_splits, dataset_table, get_dataset, get_splits, load_arrays, read_image, SPLITS
from drsn_tvl.core import DataError, DataNotFound, get_settings, parse_value
import _fakes

EXPECTED = {'synthetic', 'nih-chestxray14', 'aptos2019', 'eye-diseases', 'ham10000', 'medmnist', 'lidc', 'kermany-chestxray', 'folder'}

def check_item(ds, size):
    x, y = ds[0]
    assert x.shape == (3, size, size) and x.dtype == torch.float32
    # the tensor is the stored 8-bit image scaled by exactly 1/255 (a wrong scale or channel order fails), its label the index's
    assert torch.equal((x * 255).round().to(torch.uint8), torch.from_numpy(ds.image(0)).permute(2, 0, 1))
    assert torch.allclose(x * 255, (x * 255).round(), atol=1e-4) and x.std() > 0
    assert isinstance(y, int) and y == ds.labels[0] and y < len(ds.classes)

def no_leak(splits, key='group'):
    seen = {}
    for s, ds in splits.items():
        for g in ds.index[key].astype(str): assert seen.setdefault(g, s) == s, f"group {g} in {seen[g]} and {s}"

def test_registry_has_all_entries():
    assert EXPECTED <= set(DATASETS)
    t = dataset_table()
    assert set(t['name']) >= EXPECTED and {'task', 'classes', 'layout', 'present'} <= set(t.columns)
    assert (t.set_index('name').loc['synthetic', 'present'] == 'embedded')
    assert (t.set_index('name').drop('synthetic')['present'] == 'no').all()   # conftest's empty data_root

def test_synthetic_deterministic_and_split():
    sp = get_splits('synthetic', img_size=32)
    assert sum(map(len, sp.values())) == get_settings().synthetic_n
    check_item(sp['train'], 32)
    again = get_dataset('synthetic', 'train', img_size=32)
    assert torch.equal(sp['train'][7][0], again[7][0])
    other = get_dataset('synthetic', 'train', img_size=32, seed=1)
    assert not torch.equal(sp['train'][0][0], other[0][0])
    for ds in sp.values(): assert set(ds.labels) == {0, 1}

def test_synthetic_signal_is_learnable():
    "A tiny CNN learns the opacity class well above chance in seconds: the phantoms carry a real, local signal."
    from torch import nn
    torch.manual_seed(0)
    sp = get_splits('synthetic', img_size=32)
    X = {s: torch.from_numpy(load_arrays(d, progress=False)[0][..., 0].copy()).float()[:, None] / 255 for s, d in sp.items()}
    X = {s: x - x.mean((2, 3), keepdim=True) for s, x in X.items()}
    Y = {s: torch.from_numpy(d.labels.copy()) for s, d in sp.items()}
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(32, 2))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for ep in range(30):
        perm = torch.randperm(len(X['train']))
        for i in range(0, len(perm), 32):
            b = perm[i:i + 32]
            loss = nn.functional.cross_entropy(net(X['train'][b]), Y['train'][b]); opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad(): acc = (net(torch.cat([X['valid'], X['test']])).argmax(1) == torch.cat([Y['valid'], Y['test']])).float().mean()
    assert acc > 0.8, acc

def test_eye_diseases(tmp_path):
    root = _fakes.eye_diseases(tmp_path / 'eye', n=6)
    sp = get_splits('eye-diseases', root=root, img_size=24)
    assert sum(map(len, sp.values())) == 24 and sp['train'].classes[0] == 'cataract'
    check_item(sp['test'], 24)
    assert {Path(p).suffix for p in pd.concat([d.index for d in sp.values()])['item']} == {'.jpg', '.jpeg', '.png'}
    # Kaggle nests the class folders in dataset/
    nested = _fakes.eye_diseases(tmp_path / 'k' / 'dataset', n=3)
    assert len(get_dataset('eye-diseases', None, root=tmp_path / 'k')) == 12

def test_eye_diseases_found_under_data_root(tmp_path, monkeypatch):
    _fakes.eye_diseases(tmp_path / 'dr' / 'eye-diseases', n=3)
    assert len(get_dataset('eye-diseases', None, data_root=tmp_path / 'dr')) == 12
    monkeypatch.setenv('DRSN_TVL_DATA_ROOT', str(tmp_path / 'dr'))
    assert dataset_table().set_index('name').loc['eye-diseases', 'present'].endswith('eye-diseases')

def test_eye_diseases_errors(tmp_path):
    root = _fakes.eye_diseases(tmp_path / 'eye', n=2)
    for f in (root / 'glaucoma').iterdir(): f.unlink()
    with pytest.raises(DataError, match='glaucoma.*no images'): get_dataset('eye-diseases', root=root)
    (root / 'glaucoma').rmdir()
    with pytest.raises(DataNotFound, match='glaucoma'): get_dataset('eye-diseases', root=root)

def test_corrupt_and_missing_image(tmp_path):
    root = _fakes.eye_diseases(tmp_path / 'eye', n=2)
    bad = root / 'normal' / 'normal_0.jpg'; bad.write_bytes(b'garbage')
    ds = get_dataset('eye-diseases', None, root=root)
    i = list(ds.index['item']).index(str(bad))
    with pytest.raises(DataError, match='normal_0.jpg.*corrupt'): ds[i]
    bad.unlink()
    with pytest.raises(DataNotFound, match='normal_0.jpg'): ds[i]

def test_nih_official_layout(tmp_path):
    root = _fakes.nih_official(tmp_path / 'nih', n_patients=20)
    sp = get_splits('nih-chestxray14', root=root, img_size=16)
    assert sum(map(len, sp.values())) == 40
    no_leak(sp)
    check_item(sp['train'], 16)
    full = get_dataset('nih-chestxray14', None, root=root)
    df = pd.read_csv(root / 'Data_Entry_2017_v2020.csv').set_index('Image Index')
    for item, lbl in zip(full.index['item'], full.labels):
        assert lbl == int(df.loc[Path(item).name, 'Finding Labels'] != 'No Finding')
    eff = get_dataset('nih-chestxray14', None, root=root, finding='Effusion')
    assert eff.classes == ['other', 'Effusion']
    for item, lbl in zip(eff.index['item'], eff.labels):
        assert lbl == int('Effusion' in df.loc[Path(item).name, 'Finding Labels'].split('|'))
    with pytest.raises(ValueError, match='unknown finding'): get_dataset('nih-chestxray14', root=root, finding='Flu')

def test_nih_official_test_list(tmp_path):
    root = _fakes.nih_official(tmp_path / 'nih', n_patients=15, test_list=True)
    test = get_dataset('nih-chestxray14', 'test', root=root)
    assert set(test.index['group'].astype(int)) == {1, 2, 3}
    no_leak(get_splits('nih-chestxray14', root=root))

def test_nih_errors(tmp_path):
    root = _fakes.nih_official(tmp_path / 'nih', n_patients=4)
    df = pd.read_csv(root / 'Data_Entry_2017_v2020.csv').drop(columns=['Patient ID'])
    df.to_csv(root / 'Data_Entry_2017_v2020.csv', index=False)
    with pytest.raises(DataError, match="Data_Entry_2017_v2020.csv.*Patient ID"): get_dataset('nih-chestxray14', root=root)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DataNotFound, match='Data_Entry_2017'): get_dataset('nih-chestxray14', root=tmp_path / 'empty')

def test_nih_folder_layout(tmp_path):
    root = _fakes.nih_folders(tmp_path / 'nih-chestxray14-1000', n=3)
    sp = get_splits('nih-chestxray14', root=root, img_size=16)
    assert {k: len(v) for k, v in sp.items()} == {'train': 6, 'valid': 6, 'test': 6}   # official folders kept
    assert sp['valid'].summary()['n'].tolist() == [3, 3]
    check_item(sp['valid'], 16)
    # found by its folder name under data_root
    assert len(get_dataset('nih-chestxray14', None, data_root=tmp_path)) == 18

def test_aptos(tmp_path):
    root = _fakes.aptos(tmp_path / 'aptos', n=25)
    ds = get_dataset('aptos2019', None, root=root, img_size=16)
    assert ds.classes[0] == 'no_dr' and len(ds.classes) == 5 and sorted(set(ds.labels)) == [0, 1, 2, 3, 4]
    b = get_dataset('aptos2019', None, root=root, binary=True)
    assert b.classes == ['no_dr', 'dr'] and (b.labels == (ds.labels > 0)).all()
    check_item(get_dataset('aptos2019', 'train', root=root, img_size=16), 16)

def test_aptos_errors(tmp_path):
    root = _fakes.aptos(tmp_path / 'aptos', n=6)
    next((root / 'train_images').iterdir()).unlink()
    with pytest.raises(DataNotFound, match='missing'): get_dataset('aptos2019', root=root)
    pd.DataFrame({'id': ['a'], 'diagnosis': [0]}).to_csv(root / 'train.csv', index=False)
    with pytest.raises(DataError, match="train.csv.*id_code"): get_dataset('aptos2019', root=root)
    pd.DataFrame({'id_code': ['a'], 'diagnosis': [7]}).to_csv(root / 'train.csv', index=False)
    with pytest.raises(DataError, match='grades 0-4'): get_dataset('aptos2019', root=root)

def test_ham10000_split_by_lesion(tmp_path):
    root = _fakes.ham(tmp_path / 'ham', n_lesions=28)
    sp = get_splits('ham10000', root=root, img_size=16)
    no_leak(sp)
    assert len(sp['train'].classes) == 7
    check_item(sp['train'], 16)
    md = pd.read_csv(root / 'HAM10000_metadata.csv')
    md.loc[0, 'dx'] = 'flu'; md.to_csv(root / 'HAM10000_metadata.csv', index=False)
    with pytest.raises(DataError, match="'dx'.*flu"): get_dataset('ham10000', root=root)

def test_kermany(tmp_path):
    root = _fakes.kermany(tmp_path / 'k', n=2)
    sp = get_splits('kermany-chestxray', root=root, img_size=16)
    assert {k: len(v) for k, v in sp.items()} == {'train': 4, 'valid': 4, 'test': 4}
    assert set(sp['train'].index['group']) == {'IM-0100', 'IM-0101', 'person1', 'person2'}
    assert get_dataset('kermany-chestxray', None, root=root / 'chest_xray').c == 2   # root may be chest_xray itself

def test_medmnist(tmp_path):
    _fakes.medmnist_npz(tmp_path / 'pneumoniamnist.npz', n=(8, 4, 5))
    sp = get_splits('medmnist', root=tmp_path, flag='pneumoniamnist', img_size=28)
    assert {k: len(v) for k, v in sp.items()} == {'train': 8, 'valid': 4, 'test': 5}
    assert sp['train'].classes == ['normal', 'pneumonia']
    check_item(sp['test'], 28)
    arrs = _fakes.medmnist_npz(tmp_path / 'retinamnist_64.npz', size=64, channels=3, n_classes=5, seed=1)
    r = get_dataset('medmnist', 'valid', root=tmp_path, flag='retinamnist', size=64, img_size=64)
    assert len(r.classes) == 5
    assert (r[1][0] * 255).round().byte().permute(1, 2, 0).numpy().tolist() == arrs['val_images'][1].tolist()
    _fakes.medmnist_npz(tmp_path / 'chestmnist.npz', multilabel=14, seed=2)
    c = get_dataset('medmnist', None, root=tmp_path, flag='chestmnist')
    assert c.classes == ['no_finding', 'finding']

def test_medmnist_errors(tmp_path, monkeypatch):
    with pytest.raises(KeyError, match='unknown MedMNIST flag'): get_dataset('medmnist', root=tmp_path, flag='catmnist')
    with pytest.raises(DataNotFound, match='dermamnist.npz.*download=True'): get_dataset('medmnist', root=tmp_path, flag='dermamnist')
    np.savez(tmp_path / 'dermamnist.npz', train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match='dermamnist.npz.*train_labels'): get_dataset('medmnist', root=tmp_path, flag='dermamnist')
    import medmnist
    def offline(*a, **k): raise OSError('[Errno -2] Name or service not known')
    monkeypatch.setattr(medmnist, 'BloodMNIST', offline)
    with pytest.raises(DataNotFound, match='impossible offline'):
        get_dataset('medmnist', root=tmp_path, flag='bloodmnist', download=True)

def test_lidc_orthogonal_slices(tmp_path):
    arrs = _fakes.nodule3d_npz(tmp_path / 'nodulemnist3d.npz')
    ds = get_dataset('lidc', 'train', root=tmp_path, img_size=28)
    assert ds.classes == ['benign', 'malignant']
    img = ds.raw(2); v = arrs['train_images'][2]
    assert (img[..., 0] == v[14]).all() and (img[..., 1] == v[:, 14]).all() and (img[..., 2] == v[:, :, 14]).all()
    check_item(ds, 28)

def test_bad_names_and_roots(tmp_path):
    with pytest.raises(KeyError, match='registered datasets'): get_dataset('imagenet')
    with pytest.raises(DataNotFound, match='does not exist'): get_dataset('eye-diseases', root=tmp_path / 'nope')
    with pytest.raises(DataNotFound, match='pass root='): get_dataset('eye-diseases')   # empty data_root (conftest)
    with pytest.raises(ValueError, match='split must be'): get_dataset('synthetic', 'val')
    with pytest.raises(KeyError, match='unknown setting'): get_settings(img_sise=3)

@pytest.mark.parametrize('seed', range(5))
def test_assign_splits_properties(seed):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 40, 300); labels = rng.integers(0, 3, 300)
    sp = assign_splits(labels, groups, [0.6, 0.2, 0.2], seed)
    for g in np.unique(groups): assert len(set(sp[groups == g])) == 1
    frac = pd.Series(sp).value_counts(normalize=True)
    assert 0.4 < frac['train'] < 0.8 and set(frac.index) == set(SPLITS)
    assert (sp == assign_splits(labels, groups, [0.6, 0.2, 0.2], seed)).all()

def test_parse_value():
    assert parse_value('2/255') == 2 / 255 and parse_value('a, b') == ['a', 'b'] and parse_value('off') is False

def test_load_arrays_cache_atomic(tmp_path):
    ds = get_dataset('synthetic', 'test', img_size=16)
    x, y = load_arrays(ds, cache_dir=tmp_path, progress=False)
    files = list(tmp_path.rglob('*'))
    assert sorted(f.suffix for f in files if f.is_file()) == ['.lock', '.npz', '.sha256'] and x.dtype == np.uint8   # entry, record, lock: no temp file
    assert x.shape == (len(ds), 16, 16, 3)

def test_one_cache_entry_however_the_data_root_is_spelled(tmp_path, monkeypatch):
    "A relative, an absolute and a `..`-laden spelling of the same folder find the same images and the same pixel-cache entry."
    own_folders(tmp_path / 'data' / 'mine', {'a': 3, 'b': 3})
    (tmp_path / 'elsewhere').mkdir(); monkeypatch.chdir(tmp_path / 'elsewhere')
    spellings = ['../data/mine', str(tmp_path / 'data' / 'mine'), str(tmp_path / 'elsewhere' / '..' / 'data' / 'mine')]
    sets = [get_dataset('folder', 'train', root=r, img_size=8) for r in spellings]
    assert len({tuple(ds.index['item']) for ds in sets}) == 1
    for ds in sets: load_arrays(ds, cache_dir=tmp_path / 'cache', progress=False)
    assert len(list((tmp_path / 'cache').rglob('*.npz'))) == 1
    _fakes.eye_diseases(tmp_path / 'data' / 'eye-diseases', n=1)
    t = dataset_table('../data').set_index('name')                           # shown as typed from here, not as an absolute path
    assert t.loc['eye-diseases', 'present'] == '../data/eye-diseases'


# ---- the `folder` entry: one's own images, as class sub-folders or a CSV of path,label[,patient]

def own_folders(root, counts={'tb': 6, 'normal': 9, 'covid': 5}, ext='.png'):
    "Class sub-folders of tiny PNGs (distinct pixels per image); returns root."
    for c, n in counts.items():
        for i in range(n): _fakes.write_img(Path(root) / c / f'{c}_{i}{ext}', size=12, seed=i)
    return Path(root)

def own_csv(path, rows, **cols):
    "Write a CSV of `rows` (dicts or tuples with `cols`) and return its path."
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, **cols).to_csv(path, index=False)
    return path

def test_folder_registered_and_listed():
    assert 'folder' in DATASETS and 'folder' in set(dataset_table()['name'])
    row = dataset_table().set_index('name').loc['folder']
    assert row['present'] == 'no' and 'path,label' in row['layout'] and '<class>/<image>' in row['layout']

def test_folder_class_subfolders(tmp_path):
    root = own_folders(tmp_path / 'mine')
    sp = get_splits('folder', root=root, img_size=16)
    assert sp['train'].classes == ['covid', 'normal', 'tb']      # sorted, not in creation order
    assert sum(map(len, sp.values())) == 20 and all(len(ds) for ds in sp.values())
    for ds in sp.values():                                      # each file's label is its folder's class
        for item, lbl in zip(ds.index['item'], ds.labels): assert ds.classes[lbl] == Path(item).parent.name
    check_item(sp['train'], 16)
    assert torch.equal(sp['test'][0][0], get_dataset('folder', 'test', root=root, img_size=16)[0][0])

def test_folder_split_deterministic(tmp_path):
    root = own_folders(tmp_path / 'mine', {'a': 20, 'b': 20})
    items = lambda **kw: {s: ds.index['item'].tolist() for s, ds in get_splits('folder', root=root, **kw).items()}
    assert items(seed=3) == items(seed=3)
    assert items(seed=3) != items(seed=4)
    sizes = {s: len(v) for s, v in items(seed=3, fracs=[0.5, 0.25, 0.25]).items()}
    assert sizes == {'train': 20, 'valid': 10, 'test': 10}

def test_folder_csv_relative_absolute_and_labels(tmp_path):
    own_folders(tmp_path / 'imgs', {'x': 4, 'y': 4})
    other = _fakes.write_img(tmp_path / 'elsewhere' / 'far.png', size=12, seed=9)
    rows = [(f'imgs/x/x_{i}.png', 'pneumonia') for i in range(4)] + [(f'imgs/y/y_{i}.png', 'normal') for i in range(4)]
    rows += [(str(tmp_path / 'elsewhere' / 'far.png'), 'normal')]
    csv = own_csv(tmp_path / 'labels.csv', rows, columns=['path', 'label'])
    full = get_dataset('folder', None, root=csv, img_size=12)
    assert full.classes == ['normal', 'pneumonia']
    assert full.labels.tolist() == [1] * 4 + [0] * 5
    assert full.index['item'].tolist() == [str(tmp_path / p) for p, _ in rows[:8]] + [rows[8][0]]
    assert (full.raw(8) == other).all()
    # the folder holding the CSV works too, and so does csv= relative to root
    assert len(get_dataset('folder', None, root=tmp_path)) == 9
    assert len(get_dataset('folder', None, root=tmp_path, csv='labels.csv')) == 9
    # integer labels keep their numbers (sorted numerically), names are their strings
    own_csv(csv, [(p, {'pneumonia': 10, 'normal': 2}[l]) for p, l in rows], columns=['path', 'label'])
    ints = get_dataset('folder', None, root=csv)
    assert ints.classes == ['2', '10'] and ints.labels.tolist() == [1] * 4 + [0] * 5

def test_folder_csv_patient_split(tmp_path):
    rows = []
    for p in range(30):                                         # 30 patients, 3 images each, a patient's class fixed
        for k in range(3):
            rel = f'img/p{p}_{k}.png'; _fakes.write_img(tmp_path / rel, size=10, seed=p * 3 + k)
            rows.append({'path': rel, 'label': 'sick' if p % 3 == 0 else 'well', 'patient': f'P{p:03d}'})
    csv = own_csv(tmp_path / 'meta.csv', rows)
    sp = get_splits('folder', root=csv, img_size=10)
    no_leak(sp)
    assert {g for ds in sp.values() for g in ds.index['group']} == {f'P{p:03d}' for p in range(30)}
    for ds in sp.values(): assert set(ds.labels) == {0, 1}    # stratified: both classes in every split
    again = get_splits('folder', root=csv, img_size=10)
    assert all(sp[s].index['item'].tolist() == again[s].index['item'].tolist() for s in SPLITS)
    moved = get_splits('folder', root=csv, img_size=10, seed=7)
    assert any(sp[s].index['item'].tolist() != moved[s].index['item'].tolist() for s in SPLITS)

def test_folder_errors(tmp_path):
    root = own_folders(tmp_path / 'mine', {'a': 2, 'b': 2})
    (root / 'c').mkdir()
    with pytest.raises(DataError, match=r'class folder .*/c holds no images'): get_dataset('folder', root=root)
    (root / 'c').rmdir(); [f.unlink() for f in (root / 'b').iterdir()]; (root / 'b').rmdir()
    with pytest.raises(DataError, match=r"only one class folder \('a'\).*<root>/<class>/<image>"): get_dataset('folder', root=root)
    with pytest.raises(DataError, match='no class sub-folders and no .csv.*path,label'): get_dataset('folder', root=root / 'a')
    with pytest.raises(DataError, match='is a file but not a .csv'): get_dataset('folder', root=root / 'a' / 'a_0.png')
    with pytest.raises(DataNotFound, match='does not exist.*path,label'): get_dataset('folder', root=tmp_path / 'nope')

def test_folder_csv_errors(tmp_path):
    _fakes.write_img(tmp_path / 'i' / 'a.png'); _fakes.write_img(tmp_path / 'i' / 'b.png')
    csv = own_csv(tmp_path / 'bad.csv', {'file': ['i/a.png'], 'label': [0]})
    with pytest.raises(DataError, match=r"bad.csv lacks column\(s\) \['path'\].*found \['file', 'label'\].*Expected layout"):
        get_dataset('folder', root=csv)
    own_csv(csv, {'path': ['i/a.png', 'i/gone.png'], 'label': [0, 1]})
    with pytest.raises(DataNotFound, match=r'bad.csv: 1 path\(s\) do not exist, e.g. line 3: .*i/gone.png'): get_dataset('folder', root=csv)
    own_csv(csv, {'path': ['i/a.png', 'i/b.png'], 'label': ['x', 'x']})
    with pytest.raises(DataError, match=r"bad.csv, column 'label': only one class \('x'\)"): get_dataset('folder', root=csv)
    own_csv(csv, {'path': ['i/a.png', 'i/b.png'], 'label': ['x', None]})
    with pytest.raises(DataError, match=r'bad.csv.*empty label on line\(s\) \[3\]'): get_dataset('folder', root=csv)
    own_csv(csv, {'path': ['i/a.png', str(tmp_path / 'i' / 'a.png')], 'label': [0, 1]})
    with pytest.raises(DataError, match='bad.csv: lines \\[2, 3\\] list the same image file'): get_dataset('folder', root=csv)
    own_csv(csv, {'path': ['i/a.png', 'i/b.png'], 'label': [0, 1], 'patient': ['p', None]})
    with pytest.raises(DataError, match=r"bad.csv: column 'patient' is empty on line\(s\) \[3\]"): get_dataset('folder', root=csv)
    own_csv(csv, {'path': [], 'label': []})
    with pytest.raises(DataError, match='bad.csv has no rows'): get_dataset('folder', root=csv)
    own_csv(tmp_path / 'two.csv', {'path': ['i/a.png'], 'label': [0]})
    with pytest.raises(DataError, match='several CSV files \\(bad.csv, two.csv\\)'): get_dataset('folder', root=tmp_path)

def test_folder_unreadable_image(tmp_path):
    root = own_folders(tmp_path / 'mine', {'a': 3, 'b': 3})
    bad = root / 'a' / 'a_1.png'; bad.write_bytes(b'not an image')
    ds = get_dataset('folder', None, root=root)
    with pytest.raises(DataError, match='a_1.png is corrupt'): ds[list(ds.index['item']).index(str(bad))]

# ---- DICOM in read_image (pydicom is optional, never a dependency)

def write_dicom(path, arr, photometric='MONOCHROME2', bits=12):
    pydicom = pytest.importorskip('pydicom')
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    ds = Dataset(); ds.file_meta = FileMetaDataset(); ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = '1.2.840.10008.5.1.4.1.1.7'
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.set_pixel_data(arr, photometric, bits)
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True); ds.save_as(path, enforce_file_format=True)
    return path

def test_dicom_conversion_without_pydicom():
    from drsn_tvl.data import dicom_to_uint8
    raw = np.array([[0, 4095], [1000, 2048]], np.uint16)
    g = dicom_to_uint8(raw)
    assert g.shape == (2, 2, 3) and g.dtype == np.uint8 and (g[..., 0] == g[..., 1]).all()
    assert g[..., 0].tolist() == [[0, 255], [62, 128]]
    assert (dicom_to_uint8(raw, 'MONOCHROME1') == 255 - g).all()
    assert (dicom_to_uint8(raw.astype(np.float32) * 0.5 + 3) == g).all()   # any positive linear rescale: same image

def test_dicom_needs_pydicom(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, 'pydicom', None)            # as if pydicom were not installed
    f = tmp_path / 'scan.dcm'; f.write_bytes(b'\0' * 128 + b'DICM')
    with pytest.raises(DataError, match=r'scan.dcm: reading DICOM .*needs pydicom.*pip install pydicom'): read_image(f)
    with pytest.raises(DataNotFound, match='gone.dcm'): read_image(tmp_path / 'gone.dcm')

def test_dicom_read_and_folder(tmp_path):
    tmp_path = tmp_path / 'own'                                       # conftest puts no-data/ and cache/ in tmp_path
    raw = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 50 + 100)   # 100..3250 in 12 bits
    expect = np.round((raw.astype(float) - 100) * 255 / 3150).astype(np.uint8)
    m2 = write_dicom(tmp_path / 'a' / 'm2.dcm', raw)
    assert (read_image(m2) == np.repeat(expect[..., None], 3, 2)).all()
    m1 = write_dicom(tmp_path / 'a' / 'm1.DCM', raw, 'MONOCHROME1')
    assert (read_image(m1)[..., 0] == 255 - expect).all()
    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    assert (read_image(write_dicom(tmp_path / 'b' / 'rgb.dcm', rgb, 'RGB', 8)) == rgb).all()
    (tmp_path / 'b' / 'broken.dcm').write_bytes(b'not a dicom file')
    with pytest.raises(DataError, match='broken.dcm is corrupt'): read_image(tmp_path / 'b' / 'broken.dcm')
    (tmp_path / 'b' / 'broken.dcm').unlink()
    ds = get_dataset('folder', None, root=tmp_path, img_size=8)   # .dcm files are found in class folders
    assert ds.classes == ['a', 'b'] and len(ds) == 3
