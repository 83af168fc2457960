"CLAHE against OpenCV's own output, on tensors and batches, and on edge cases."
import cv2
import numpy as np
import pytest
import torch

from drsn_tvl.clahe import CLAHE, clahe, clahe_tensor, gaussian_kernel, gaussian_prefilter
from drsn_tvl.data import get_dataset
from drsn_tvl.core import get_settings

def ref_grey(img, clip=2.0, tiles=8): return cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles)).apply(img)

@pytest.mark.parametrize('seed,shape,clip,tiles', [(0, (64, 64), 2.0, 8), (1, (37, 53), 4.0, 4), (2, (128, 96), 1.0, 16)])
def test_grey_matches_opencv(seed, shape, clip, tiles):
    img = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    assert np.array_equal(clahe(img, clip, tiles), ref_grey(img, clip, tiles))
    rgb = np.repeat(img[..., None], 3, 2)
    assert np.array_equal(clahe(rgb, clip, tiles), np.repeat(ref_grey(img, clip, tiles)[..., None], 3, 2))

def test_colour_equalises_lightness_only():
    from skimage.data import chelsea
    rgb = cv2.resize(chelsea(), (96, 64), interpolation=cv2.INTER_AREA)
    out = clahe(rgb, 2.0, 8)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB); lab[..., 0] = ref_grey(lab[..., 0].copy())
    assert np.array_equal(out, cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))          # exactly OpenCV's Lab-L recipe
    lab_in, lab_out = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB), cv2.cvtColor(out, cv2.COLOR_RGB2LAB)
    assert np.abs(lab_out[..., 1:].astype(int) - lab_in[..., 1:]).mean() < 2   # chroma (a, b) nearly unchanged
    assert lab_out[..., 0].std() > lab_in[..., 0].std()                        # lightness contrast went up

def test_settings_are_the_defaults():
    s = get_settings(); img = np.random.default_rng(4).integers(0, 256, (32, 32), dtype=np.uint8)
    assert np.array_equal(clahe(img), ref_grey(img, s.clahe_clip_limit, s.clahe_tile_grid))
    assert repr(CLAHE()) == f"CLAHE(clip_limit={float(s.clahe_clip_limit)}, tile_grid={s.clahe_tile_grid}, sigma={float(s.clahe_sigma)})"

def test_edge_cases():
    const = np.full((16, 16), 200, np.uint8)
    out = clahe(const); assert (out == out[0, 0]).all()                       # a constant image stays constant
    assert clahe(np.array([[0, 255], [255, 0]], np.uint8)).shape == (2, 2)    # tiny image, smaller than the tile grid
    g16 = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    assert np.array_equal(clahe(g16, 2.0, 8), ref_grey(g16))                  # 16-bit grey: native 16-bit histogram
    with pytest.raises(TypeError, match='16-bit colour'): clahe(np.zeros((8, 8, 3), np.uint16) + np.arange(3, dtype=np.uint16))
    with pytest.raises(TypeError, match='clahe_tensor'): clahe(np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match='H×W'): clahe(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ValueError, match='clip_limit'): clahe(const, clip_limit=0)

def test_gaussian_kernel_is_eq5():
    k = gaussian_kernel(2.0, radius=4)
    y, x = np.mgrid[-4:5, -4:5]
    g = np.exp(-(x ** 2 + y ** 2) / 8) / (2 * np.pi * 4)
    assert np.allclose(k, g / g.sum()) and k.argmax() == 40
    with pytest.raises(ValueError): gaussian_kernel(0)
    img = np.random.default_rng(5).integers(0, 256, (30, 30), dtype=np.uint8)
    assert np.array_equal(clahe(img, 2.0, 8, sigma=1.5), ref_grey(gaussian_prefilter(img, 1.5)))

def test_tensor_and_batch():
    ds = get_dataset('synthetic', 'valid', img_size=32)
    xb = torch.stack([ds[i][0] for i in range(4)])
    out = clahe_tensor(xb)
    assert out.shape == xb.shape and out.dtype == xb.dtype
    assert torch.allclose(out * 255, (out * 255).round(), atol=1e-4)   # on the 8-bit grid, in [0, 1] (checked exactly below)
    assert not torch.equal(out, xb)                                    # it changed the images
    for i in range(4):
        assert torch.equal(out[i], clahe_tensor(xb[i]))
        expect = CLAHE()(ds.image(i))
        assert np.array_equal((out[i] * 255).round().byte().permute(1, 2, 0).numpy(), expect)
    with pytest.raises(ValueError, match=r'\[0, 1\]'): clahe_tensor(xb + 1)
    with pytest.raises(TypeError, match='float'): clahe_tensor((xb * 255).byte())
    with pytest.raises(ValueError, match='N×3×H×W'): clahe_tensor(xb[0, 0])

def test_as_dataset_transform():
    raw = get_dataset('synthetic', 'test', img_size=32)
    enh = get_dataset('synthetic', 'test', img_size=32, tfms=CLAHE(clip_limit=3.0))
    assert np.array_equal(enh.image(1), clahe(raw.image(1), clip_limit=3.0))
    assert enh.image(1).std() > raw.image(1).std()      # contrast went up
