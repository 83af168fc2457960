"Tests of drsn_tvl.features: registry and shapes, extraction, the resumable fp16 cache, bad input, data parallel."
import json, os, pickle, shutil, socket, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from drsn_tvl.data import get_dataset, load_arrays
from drsn_tvl.features import BACKBONES, ArraySource, FeatureConfig, create_extractor, extract_features, feature_shapes, load_features, min_input_size, source_fingerprint, to_fp16, get_backbone
from drsn_tvl.core import CacheMismatch, CorruptCache, FeatureError, ImageSizeError, get_settings, settings_hash
from drsn_tvl.cli import backbones_cmd

KW = dict(batch_size=8, shard_size=16, progress=False)




@pytest.fixture(scope='module')
def arrays():
    "The synthetic valid split at 32 px as uint8 arrays (44 images), never cached on disk."
    ds = get_dataset('synthetic', 'valid', img_size=32)
    u8, lab = load_arrays(ds, cache=False, progress=False)
    return ds, u8, lab


@pytest.fixture(scope='module')
def lite():
    return create_extractor('tf_efficientnet_lite0', layer='stage2')


def files(d):
    "The cache folder's files and bytes; the empty lock file of a single-process run (`core.file_lock`) aside."
    return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir()) if not p.name.endswith('.lock')}


class Stop(Exception):
    pass


def stop_after(k):
    def cb(done, total):
        if done == k: raise Stop(f'stopped after {k}')
    return cb


# ---- registry and shapes (meta device: no weights, no compute)
def test_registry_shapes_and_layer_errors(capsys):
    assert {'efficientnet_b7', 'resnet50', 'densenet121', 'vgg16', 'inception_v3', 'mobilenetv2_100',
            'tf_efficientnet_lite0'} <= set(BACKBONES)
    assert get_backbone('efficientnet_b7').family == 'EfficientNet-B7'
    assert feature_shapes('efficientnet_b7', 224)['map'] == (2560, 7, 7)
    assert feature_shapes('efficientnet_b7', 224, 'stage3')['map'] == (224, 14, 14)
    assert feature_shapes('resnet50', 224) == dict(map=(2048, 7, 7), vec=(2048,), layer='final', module='forward_features')
    assert feature_shapes('vgg16', 224)['vec'] == (4096,)
    assert feature_shapes('densenet121', (224, 160))['map'] == (1024, 7, 5)            # non-square input
    with pytest.raises(KeyError, match='unknown backbone .vit_huge.*registered backbones'): feature_shapes('vit_huge')
    with pytest.raises(KeyError, match="unknown layer 'layer5'.*stage4 \\(layer4\\)"): feature_shapes('resnet18', 64, 'layer5')
    with pytest.raises(ImageSizeError, match='cannot take 48×48.*smallest size it takes is 75'): feature_shapes('inception_v3', 48)
    with pytest.raises(ImageSizeError, match='vgg16'): feature_shapes('vgg16', 16)
    assert min_input_size('vgg16') == 32 and feature_shapes('vgg16', 16, size=32)['map'] == (512, 1, 1)
    with pytest.raises(FeatureError, match='pool must lie in 1..7'): feature_shapes('resnet18', 224, pool=8)
    backbones_cmd(img_size=64)                                         # what `drsn-tvl backbones --img-size 64` prints
    out = capsys.readouterr().out
    assert all(n in out for n in BACKBONES) and '(needs ≥ 75 px)' in out and '2560×2×2' in out


# ---- the stage's one configuration
def test_feature_config_from_settings_overrides_and_errors(monkeypatch, tmp_path):
    s = get_settings()
    c = FeatureConfig.from_settings()
    assert (c.backbone, c.feature_layer, c.feature_pool, c.feature_size, c.feature_batch_size, c.feature_shard_size) == \
           (s.backbone, s.feature_layer, s.feature_pool, s.feature_size, s.feature_batch_size, s.feature_shard_size)
    assert (c.seed, c.num_workers, c.cache_dir) == (s.seed, s.num_workers, str(tmp_path / 'cache'))    # conftest's cache_dir
    assert c.feature_weights is None and c.layer == BACKBONES[s.backbone].layer                        # empty; 'default'
    monkeypatch.setenv('DRSN_TVL_FEATURE_POOL', '3')                                                    # read at build time
    assert FeatureConfig.from_settings().feature_pool == 3 and FeatureConfig.from_settings(feature_pool=1).feature_pool == 1
    o = c.replace(backbone='resnet18', feature_layer='layer3', feature_batch_size='4', feature_weights='')
    assert (o.spec.arch, o.layer, o.feature_batch_size, o.feature_weights) == ('resnet18.tv_in1k', 'layer3', 4, None)
    assert c.replace(feature_size=None, seed=None) == c and o.asdict()['feature_batch_size'] == 4
    with pytest.raises(KeyError, match="unknown key.*'layer'"): FeatureConfig.from_settings(layer='stage3')
    with pytest.raises(KeyError, match='unknown backbone .nonet.*registered backbones'): c.replace(backbone='nonet')
    for k, v, msg in (('feature_pool', -1, r'\[features\] feature_pool must be >= 0'), ('feature_size', -8, 'feature_size must be >= 0'),
                      ('feature_batch_size', 0, 'feature_batch_size must be >= 1'), ('feature_shard_size', 0, 'feature_shard_size must be >= 1'),
                      ('num_workers', -1, r'\[data\] num_workers must be >= 0'), ('feature_pool', 2.5, r'\[features\] feature_pool: expected int')):
        with pytest.raises(FeatureError if 'expected' not in msg else ValueError, match=msg): c.replace(**{k: v})
    # the entry points build it once and check it: bad values fail before any weights load or file is written
    with pytest.raises(FeatureError, match='feature_shard_size must be >= 1'):
        extract_features((np.zeros((2, 8, 8, 3), np.uint8), [0, 1]), 'resnet18', shard_size=0, out=tmp_path / 'x', progress=False)
    with pytest.raises(FeatureError, match='feature_pool must be >= 0'): create_extractor('resnet18', pool=-1, pretrained=False)
    assert not (tmp_path / 'x').exists()


def test_config_entry_points_match_keywords(arrays, lite, tmp_path):
    "A FeatureConfig passed as cfg= gives the extractor, shapes and cache (same key, same bytes) the keywords give."
    ds, u8, lab = arrays
    sub = (u8[:12], lab[:12])
    c = FeatureConfig.from_settings(backbone='tf_efficientnet_lite0', feature_layer='stage2', feature_batch_size=8, feature_shard_size=16)
    fx = create_extractor(cfg=c)
    assert (fx.spec.name, fx.layer, fx.pool, fx.size, fx.weights_sha()) == ('tf_efficientnet_lite0', 'stage2', 0, 0, lite.weights_sha())
    assert create_extractor(cfg=c, layer='stage3').layer == 'stage3'                    # a keyword overrides the config
    assert feature_shapes(img_size=32, cfg=c) == feature_shapes('tf_efficientnet_lite0', 32, 'stage2')
    assert feature_shapes(img_size=32, cfg=c.replace(feature_pool=1))['map'] == (40, 1, 1)
    by_kw = extract_features(sub, 'tf_efficientnet_lite0', layer='stage2', out=tmp_path / 'kw', **KW)
    by_cfg = extract_features(sub, cfg=c, out=tmp_path / 'cfg', progress=False)
    by_ex = extract_features(sub, extractor=lite, cfg=c.replace(backbone='resnet18', feature_pool=1), out=tmp_path / 'ex', **KW)
    assert by_kw.key == by_cfg.key == by_ex.key and files(tmp_path / 'kw') == files(tmp_path / 'cfg') == files(tmp_path / 'ex')
    # the cache key is still the hash of the same resolved values, in the same order, so older caches stay valid
    meta = json.loads((tmp_path / 'cfg' / 'settings.json').read_text())
    assert list(meta) == sorted(['format', 'backbone', 'arch', 'layer', 'module', 'pool', 'size', 'input_shape', 'map_shape',
                                 'vec_shape', 'dtype', 'count', 'batch_size', 'shard_size', 'weights_sha', 'source',
                                 'precision', 'device_type', 'key', 'weights'])
    assert meta['key'] == settings_hash({k: v for k, v in meta.items() if k not in ('key', 'weights')})
    assert (meta['batch_size'], meta['shard_size'], meta['pool'], meta['size']) == (8, 16, 0, 0)
    # the configured cache folder, from cfg.cache_dir
    fs = extract_features(sub, extractor=lite, cfg=c.replace(cache_dir=str(tmp_path / 'elsewhere')), progress=False)
    assert fs.path.parent == tmp_path / 'elsewhere' / 'features' and fs.key == by_kw.key


def test_no_settings_read_below_entry_points():
    "Only FeatureConfig.from_settings reads the settings: no setting()/get_settings() call anywhere in the module."
    import inspect, re
    import drsn_tvl.features as m
    src = inspect.getsource(m)
    assert not re.search(r'\b(setting|get_settings)\(', src), re.findall(r'.*\b(?:setting|get_settings)\(.*', src)


# ---- extraction
def test_features_equal_direct_forward(arrays, lite, tmp_path):
    ds, u8, lab = arrays
    fs = extract_features(ds, extractor=lite, out=tmp_path / 'a', **KW)
    assert len(fs) == len(ds) == 44 and fs.maps.dtype == np.float16 and fs.maps.shape == (44, 40, 4, 4)
    assert fs.vecs.shape == (44, 1280) and (fs.labels == ds.labels).all()
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.inference_mode():
        ref = lite.model.forward_intermediates((x - 0.5) / 0.5, indices=[2], intermediates_only=True)[0]
        vec = lite.model((x - 0.5) / 0.5)
    for got, want in ((fs.maps[:], ref), (fs.vecs[:], vec)):
        assert np.abs(got.astype(np.float32) - want.numpy()).max() <= 1e-3 * want.abs().max().item()
    m, y = fs[5]
    assert m.dtype == torch.float32 and m.shape == (40, 4, 4) and y == ds.labels[5]
    # the same pixels as uint8 arrays give the same bytes, under another source identity
    fa = extract_features((u8, lab), extractor=lite, out=tmp_path / 'b', **KW)
    assert fa.key != fs.key and np.array_equal(fa.maps[:], fs.maps[:]) and np.array_equal(fa.vecs[:], fs.vecs[:])
    # a second call is a cache hit: nothing computed
    calls = []
    again = extract_features(ds, extractor=lite, out=tmp_path / 'a', on_batch=lambda *a: calls.append(a), **KW)
    assert calls == [] and again.key == fs.key


def test_pool_resize_and_default_cache_dir(arrays, tmp_path, monkeypatch):
    ds, u8, lab = arrays
    monkeypatch.setenv('DRSN_TVL_CACHE_DIR', str(tmp_path))
    fs = extract_features(torch.utils.data.Subset(ds, range(10)), 'resnet18', layer='stage3', pool=1, size=64,
                          pretrained=False, **KW)
    assert fs.path.parent == tmp_path / 'features' and fs.maps.shape == (10, 256, 1, 1)
    assert fs.manifest['size'] == 64 and fs.manifest['pool'] == 1 and fs.manifest['weights'].startswith('random')
    # random weights are seeded: a second extractor is the same network, so the same key
    assert create_extractor('resnet18', pretrained=False).weights_sha() == create_extractor('resnet18', pretrained=False).weights_sha()


# ---- the cache: resumable, byte-identical, never mixed, damage detected
@pytest.mark.parametrize('k', [1, 2, 4])          # mid-shard, at a shard boundary, in the last shard
def test_interrupted_run_resumes_byte_identical(arrays, lite, tmp_path, k):
    ds, u8, lab = arrays
    full = extract_features((u8, lab), extractor=lite, out=tmp_path / 'full', **KW)
    with pytest.raises(Stop): extract_features((u8, lab), extractor=lite, out=tmp_path / 'cut', on_batch=stop_after(k), **KW)
    assert not (tmp_path / 'cut' / 'manifest.json').exists()
    with pytest.raises(CorruptCache, match='no manifest.json.*interrupted run'): load_features(tmp_path / 'cut')
    calls = []
    cut = extract_features((u8, lab), extractor=lite, out=tmp_path / 'cut', on_batch=lambda d, t: calls.append(t), **KW)
    assert calls and calls[0] == 6 - k                  # 44 images / 8 per batch = 6 batches; only the rest ran
    assert files(tmp_path / 'full') == files(tmp_path / 'cut')
    assert cut.manifest == full.manifest


def test_other_settings_refused_or_overwritten(arrays, lite, tmp_path):
    ds, u8, lab = arrays
    sub = (u8[:12], lab[:12])
    extract_features(sub, extractor=lite, out=tmp_path, **KW)
    with pytest.raises(CacheMismatch, match="shard_size: 16 on disk vs 8 now"):
        extract_features(sub, extractor=lite, out=tmp_path, **{**KW, 'shard_size': 8})
    with pytest.raises(CacheMismatch, match='count'):                     # other images
        extract_features((u8[:10], lab[:10]), extractor=lite, out=tmp_path, **KW)
    # an interrupted cache is protected the same way (settings.json is written first)
    with pytest.raises(Stop): extract_features(sub, extractor=lite, out=tmp_path / 'part', on_batch=stop_after(1), **KW)
    with pytest.raises(CacheMismatch, match='pool'):
        extract_features(sub, out=tmp_path / 'part', backbone='tf_efficientnet_lite0', layer='stage2', pool=2, **KW)
    fs = extract_features(sub, extractor=lite, out=tmp_path, overwrite=True, **{**KW, 'shard_size': 8})
    assert fs.manifest['shard_size'] == 8 and len(fs.manifest['shards']) == 2
    assert sorted(p.name for p in tmp_path.glob('shard-*.json')) == ['shard-00000.json', 'shard-00001.json']
    # a folder with shard files of unknown origin is not written into
    (tmp_path / 'foreign').mkdir(); (tmp_path / 'foreign' / 'shard-00000.map.npy').write_bytes(b'x')
    with pytest.raises(CacheMismatch, match='unknown'): extract_features(sub, extractor=lite, out=tmp_path / 'foreign', **KW)


def test_corrupt_shards(arrays, lite, tmp_path):
    ds, u8, lab = arrays
    good = extract_features((u8, lab), extractor=lite, out=tmp_path / 'good', **KW)
    shutil.copytree(tmp_path / 'good', tmp_path / 'c')
    p = tmp_path / 'c' / 'shard-00001.vec.npy'
    b = bytearray(p.read_bytes()); b[200] ^= 1; p.write_bytes(b)
    load_features(tmp_path / 'c')
    with pytest.raises(CorruptCache, match='shard-00001.vec.npy: SHA-256 differs'): load_features(tmp_path / 'c', verify='full')
    p.write_bytes(b[:150])
    with pytest.raises(CorruptCache, match='shard-00001.vec.npy'): load_features(tmp_path / 'c')
    with pytest.raises(CorruptCache, match='delete its files and .*manifest.json'):
        extract_features((u8, lab), extractor=lite, out=tmp_path / 'c', **KW)
    (tmp_path / 'c' / 'manifest.json').write_text('{not json')
    with pytest.raises(CorruptCache, match='manifest.json: not valid JSON'): load_features(tmp_path / 'c')
    # in an incomplete cache a damaged finished shard is reported; deleting it recomputes only that shard
    (tmp_path / 'c' / 'manifest.json').unlink()
    with pytest.raises(CorruptCache, match=r'shard-00001.vec.npy.*Delete .*shard-00001\.\*'):
        extract_features((u8, lab), extractor=lite, out=tmp_path / 'c', **KW)
    for q in (tmp_path / 'c').glob('shard-00001.*'): q.unlink()
    calls = []
    extract_features((u8, lab), extractor=lite, out=tmp_path / 'c', on_batch=lambda d, t: calls.append(t), **KW)
    assert calls == [2, 2] and files(tmp_path / 'c') == files(tmp_path / 'good')
    assert load_features(tmp_path / 'c', verify='full').key == good.key


# ---- bad input
def test_bad_inputs(arrays, lite, tmp_path):
    ds, u8, lab = arrays
    x = torch.stack([ds[i][0] for i in range(8)])
    with pytest.raises(FeatureError, match=r'image 0: pixels in \[\d+, \d+\]; expected \[0, 1\]'):
        extract_features((x * 255, lab[:8]), extractor=lite, out=tmp_path / 'a', **KW)
    with pytest.raises(FeatureError, match='3×H×W'): extract_features([(torch.rand(1, 32, 32), 0)] * 4, extractor=lite, out=tmp_path / 'b', **KW)
    late = [(torch.rand(3, 32, 32), 0)] * 9 + [(torch.rand(3, 32, 32) + 1, 0)]
    with pytest.raises(FeatureError, match=r'images 8..9: pixels in \[.*\]; expected \[0, 1\]'): extract_features(late, extractor=lite, out=tmp_path / 'g', **KW)
    mixed = [(torch.rand(3, 32, 32), 0)] * 3 + [(torch.rand(3, 40, 40), 0)]
    with pytest.raises(FeatureError, match='different shapes'): extract_features(mixed, extractor=lite, out=tmp_path / 'c', **KW)
    with pytest.raises(FeatureError, match='no images'): extract_features((x[:0], lab[:0]), extractor=lite, out=tmp_path / 'd', **KW)
    with pytest.raises(FeatureError, match='8 images but 7 labels'): extract_features((x, lab[:7]), extractor=lite, **KW)
    with pytest.raises(ImageSizeError, match='inception_v3'): extract_features((x, lab[:8]), 'inception_v3', out=tmp_path / 'e', **KW)
    with pytest.raises(KeyError, match='unknown backbone'): extract_features((x, lab[:8]), 'nonet', out=tmp_path / 'f', **KW)
    with pytest.raises(ValueError, match='not both'): extract_features((x, lab[:8]), 'resnet18', extractor=lite, **KW)
    assert not any((tmp_path / n).exists() for n in 'abdef')                # caught before anything is written
    with pytest.raises(FeatureError, match='cannot be stored in float16'): to_fp16(torch.tensor([1.0, 7e4]))
    with pytest.raises(FeatureError, match='non-finite'): to_fp16(torch.tensor([float('nan')]))
    assert to_fp16(torch.tensor([[1.5, -2.0]])).dtype == np.float16


def test_sources_and_fingerprints(arrays):
    ds, u8, lab = arrays
    t = torch.stack([ds[i][0] for i in range(len(ds))])
    class AdvSet:                                    # the adversarial-set builder's shape: .images/.labels/.fingerprint
        images, labels, fingerprint = t, lab, 'adv-abc'
    assert source_fingerprint(ArraySource(t, lab)) == source_fingerprint(ArraySource(t.clone(), lab))
    assert source_fingerprint(ArraySource(t, lab)) != source_fingerprint(ArraySource(t, 1 - lab))
    assert source_fingerprint(ds) == source_fingerprint(get_dataset('synthetic', 'valid', img_size=32))
    assert source_fingerprint(ds) != source_fingerprint(get_dataset('synthetic', 'valid', img_size=40))
    from drsn_tvl.features import as_source
    a = as_source(AdvSet())
    assert source_fingerprint(a) == 'adv-abc' and torch.equal(a[3][0], t[3]) and a[3][1] == lab[3]
    grey = as_source((u8[..., 0], lab))                                      # N×H×W uint8 → 3 channels
    assert torch.equal(grey[2][0], ds[2][0])                                  # the phantoms are grey


def test_feature_set_indexing_and_pickle(arrays, lite, tmp_path):
    ds, u8, lab = arrays
    fs = extract_features((u8, lab), extractor=lite, out=tmp_path, **KW)
    allm = np.concatenate([np.load(tmp_path / f'shard-0000{s}.map.npy') for s in range(3)])
    assert np.array_equal(np.asarray(fs.maps), allm) and np.array_equal(fs.maps[-1], allm[-1])
    idx = np.array([40, 0, 17, 15, 16])
    assert np.array_equal(fs.maps[idx], allm[idx]) and np.array_equal(fs.maps[10:30:3], allm[10:30:3])
    with pytest.raises(IndexError): fs.maps[44]
    blob = pickle.dumps(fs)
    assert len(blob) < 20_000                                                # file names, not arrays
    fs2 = pickle.loads(blob)
    assert torch.equal(fs2[7][0], fs[7][0])
    dl = torch.utils.data.DataLoader(fs, batch_size=11, num_workers=1)
    assert torch.equal(torch.cat([m for m, _ in dl]), torch.from_numpy(allm.astype(np.float32)))


# ---- data parallel: torchrun, 2 CPU processes, gloo
def test_torchrun_two_processes_equals_single_process(tmp_path, monkeypatch):
    env = {**os.environ, 'DRSN_TVL_CACHE_DIR': str(tmp_path / 'cache'), 'OMP_NUM_THREADS': '1'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nnodes', '1', '--nproc-per-node', '2',
           '--no-python', str(Path(sys.executable).parent / 'drsn-tvl'), 'features', '--dataset', 'synthetic',
           '--split', 'valid', '--img-size', '32', '--backbone', 'tf_efficientnet_lite0', '--layer', 'stage3',
           '--batch-size', '8', '--shard-size', '16', '--out', str(tmp_path / 'ddp')]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count('FeatureSet(44') == 1                               # rank 0 reports, once
    monkeypatch.setenv('DRSN_TVL_CACHE_DIR', str(tmp_path / 'cache'))
    one = extract_features(get_dataset('synthetic', 'valid', img_size=32), 'tf_efficientnet_lite0', layer='stage3',
                           out=tmp_path / 'single', **KW)                 # one thread, like each torchrun rank
    ddp = load_features(tmp_path / 'ddp', verify='full')
    assert len(ddp.manifest['shards']) == 3 and ddp.manifest == one.manifest
    assert files(tmp_path / 'ddp') == files(tmp_path / 'single')


# ---- feature sources: the victim's own maps (issue 14)
@pytest.fixture(scope='module')
def tiny_victim():
    "A randomly initialised lite0 victim with 3 classes (the Victim module: normalisation inside, [0,1] pixels in)."
    from drsn_tvl.victim import Victim
    torch.manual_seed(0)
    return Victim('tf_efficientnet_lite0', 3, pretrained=False).eval()


def vcfg(**kw):
    return FeatureConfig.from_settings(**{'feature_source': 'victim', 'victim_grid': 4, 'victim_layers': ['stages', 'logits'], **kw})


@pytest.mark.parametrize('grid', [1, 2, 4])
def test_victim_source_shapes(tiny_victim, grid):
    "Every stage map pooled (or resized: stage4 is 1×1 at 32 px) to grid×grid, concatenated, the logits broadcast: N×C×g×g."
    from drsn_tvl.features import extractor_maps
    sx = create_extractor(cfg=vcfg(victim_grid=grid), victim=tiny_victim)
    x = torch.rand(3, 3, 32, 32)
    m = extractor_maps(sx, x)
    assert tuple(m.shape) == (3, 16 + 24 + 40 + 112 + 320 + 3, grid, grid) == (3, *sx.shapes((32, 32))['map'])
    with torch.no_grad(): z = tiny_victim(x)
    assert torch.allclose(m[:, -3:, -1, 0], z.half().float(), atol=1e-6)                     # logits as constant channels
    both = create_extractor('tf_efficientnet_lite0', cfg=vcfg(victim_grid=grid), source='both', victim=tiny_victim)
    mb = extractor_maps(both, x)
    assert tuple(mb.shape) == (3, 1280 + m.shape[1], grid, grid) and torch.equal(mb[:, 1280:], m)   # backbone first, then the victim
    only = create_extractor(cfg=vcfg(victim_layers=['final', 'logits']), victim=tiny_victim)
    assert only.shapes((32, 32))['map'] == (1280 + 3, 4, 4)                                  # the victim's last map (its penultimate)


def test_victim_source_gradients_flow(tiny_victim):
    "extractor_maps(grad=True): the straight-through fp16 rounding keeps the gradient to the pixels (the adaptive attacker's need)."
    from drsn_tvl.features import extractor_maps
    for src in ('victim', 'both'):
        sx = create_extractor('tf_efficientnet_lite0', cfg=vcfg(), source=src, victim=tiny_victim)
        x = torch.rand(2, 3, 32, 32, requires_grad=True)
        m = extractor_maps(sx, x, grad=True)
        assert m.requires_grad and torch.equal(m.detach(), extractor_maps(sx, x.detach()))
        m.pow(2).sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()
    assert not tiny_victim.training


def test_victim_source_cache_key_covers_victim_weights(arrays, tiny_victim, tmp_path):
    "The same victim reuses its cache; a victim with other weights (one bias changed) gets another key and folder."
    from drsn_tvl.victim import Victim
    ds, u8, lab = arrays
    sub = (u8[:6], lab[:6])
    a = extract_features(sub, victim=tiny_victim, cfg=vcfg(), cache_dir=tmp_path, **KW)
    assert a.manifest['feature_source'] == 'victim' and a.maps.shape == (6, 515, 4, 4)
    b = extract_features(sub, extractor=create_extractor(cfg=vcfg(), victim=tiny_victim), cache_dir=tmp_path, **KW)
    assert b.key == a.key and b.path == a.path
    other = Victim('tf_efficientnet_lite0', 3, pretrained=False).eval()
    other.load_state_dict(tiny_victim.state_dict())
    with torch.no_grad(): other.head[1].bias.add_(1e-3)
    c = extract_features(sub, victim=other, cfg=vcfg(), cache_dir=tmp_path, **KW)
    assert c.key != a.key and c.path != a.path
    g = extract_features(sub, victim=tiny_victim, cfg=vcfg(victim_grid=2), cache_dir=tmp_path, **KW)
    assert g.key != a.key and g.maps.shape == (6, 515, 2, 2)
    # the paper's backbone caches keep their keys: no source fields in their metadata
    fb = extract_features(sub, 'tf_efficientnet_lite0', layer='stage2', cache_dir=tmp_path, **KW)
    assert 'feature_source' not in fb.manifest


def test_bad_feature_source_errors(tiny_victim, monkeypatch):
    "A bad feature_source names the key and the valid values; 'victim' without a victim says to pass victim=."
    with pytest.raises(FeatureError, match=r"\[features\] feature_source must be one of backbone, victim, both, got 'victm'"):
        FeatureConfig.from_settings(feature_source='victm')
    monkeypatch.setenv('DRSN_TVL_FEATURE_SOURCE', 'imagenet')
    with pytest.raises(FeatureError, match="feature_source must be one of backbone, victim, both, got 'imagenet'"):
        FeatureConfig.from_settings()
    monkeypatch.delenv('DRSN_TVL_FEATURE_SOURCE')
    with pytest.raises(FeatureError, match='pass victim='): create_extractor(cfg=vcfg())
    with pytest.raises(FeatureError, match='pass victim='): extract_features(torch.rand(2, 3, 32, 32), cfg=vcfg(), progress=False)
    with pytest.raises(FeatureError, match="unknown tap 'stage7'"): create_extractor(cfg=vcfg(victim_layers=['stage7']), victim=tiny_victim)
    with pytest.raises(FeatureError, match='victim_grid must be >= 1'): vcfg(victim_grid=0)
    with pytest.raises(ValueError, match='not both'):
        extract_features(torch.rand(2, 3, 32, 32), extractor=create_extractor(cfg=vcfg(), victim=tiny_victim), victim=tiny_victim)
