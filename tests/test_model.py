"Tests of drsn_tvl.model: shrinkage, TV loss, DRSN and baselines, registry, training, metrics, saving, errors, CLI."
import json
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from drsn_tvl.model import DETECTORS, DRSN, DNN, Detector, DetectionSet, ResidualShrinkageUnit, Shrinkage, TokenTransformer, create_detector, detection_metrics, evaluate, fit_detector, list_detectors, load_detector, make_detection_set, model_complexity, register_detector, save_detector, soft_threshold, threshold_at_fpr, tv_loss, as_features, complexity_table
from drsn_tvl.core import FeatureError

SMALL = dict(stem=8, widths=[8, 8])


def toy(n, c=8, h=4, w=4, seed=0, shift=1.0):
    "Clean smooth maps vs maps with high-frequency noise and a mean shift in half the channels (easy for every detector)."
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.randn(n, c, 2, 2, generator=g), size=(h, w), mode='bilinear', align_corners=True)
    adv = base + 0.5 * torch.randn(n, c, h, w, generator=g)
    adv[:, : c // 2] += shift
    return base, adv

def toy_sets(sizes=(96, 40, 40), **kw):
    out = {}
    for i, (split, n) in enumerate(zip(('train', 'valid', 'test'), sizes)):
        c, a = toy(n, seed=i, **kw)
        out[split] = make_detection_set(c, a, ['noise'] * n, task='detect')
    return out

# ---- soft thresholding, shrinkage, residual unit (Eq. 9-10)

def test_soft_threshold_values_and_gradient():
    x = torch.tensor([-5., -2., -1., -0.3, 0., 0.7, 1., 1.5, 4.], requires_grad=True)
    y = soft_threshold(x, 1.0)
    assert torch.equal(y.detach(), torch.tensor([-4., -1., 0., 0., 0., 0., 0., 0.5, 3.]))
    y.sum().backward()
    # derivative 1 outside ±τ on BOTH sides (Eq. 10's −1 for x < −τ is the derivative of |y|), 0 inside
    assert torch.equal(x.grad, torch.tensor([1., 1., 0., 0., 0., 0., 0., 1., 1.]))

@pytest.mark.parametrize('reduction', [1, 4])
def test_shrinkage_threshold_range_and_exact_zeros(reduction):
    torch.manual_seed(0)
    sh = Shrinkage(12, reduction)
    x = torch.randn(6, 12, 5, 5) * torch.logspace(-2, 1, 12)[None, :, None, None]   # channels of very different scales
    for train in (True, False):
        sh.train(train)
        tau = sh.thresholds(x).detach()
        a = x.abs().mean((2, 3))
        assert tau.shape == (6, 12) and (tau >= 0).all() and (tau <= a).all()
        y = sh(x).detach()
        inside = x.abs() <= tau[..., None, None]
        assert inside.any() and (~inside).any()
        assert (y[inside] == 0).all()
        torch.testing.assert_close(y[~inside], (torch.sign(x) * (x.abs() - tau[..., None, None]))[~inside])

def test_shrinkage_gradient_through_learned_threshold():
    torch.manual_seed(1)
    sh = Shrinkage(4).eval()
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    sh(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sh.fc.parameters() if p.requires_grad and p.ndim > 1)

@pytest.mark.parametrize('ni,nf,stride,proj', [(8, 8, 1, False), (8, 16, 1, True), (8, 8, 2, True), (8, 12, 2, True)])
def test_identity_path_handles_stride_and_channels(ni, nf, stride, proj):
    torch.manual_seed(0)
    u = ResidualShrinkageUnit(ni, nf, stride)
    assert isinstance(u.idpath, nn.Sequential) == proj
    x = torch.randn(3, ni, 7, 7, requires_grad=True)
    out = u(x)
    side = (7 + 2 - 3) // stride + 1
    assert out.shape == (3, nf, side, side)
    torch.testing.assert_close(out, u.shrunk + u.idpath(x))      # residual = shrinkage output + identity path
    out.sum().backward()
    assert x.grad.abs().sum() > 0
    if proj: assert isinstance(u.idpath[0], nn.Conv2d) and u.idpath[0].stride == (stride, stride) and isinstance(u.idpath[1], nn.BatchNorm2d)

def test_plain_unit_has_no_shrinkage():
    u = ResidualShrinkageUnit(4, 4, shrink=False)
    assert isinstance(u.shrink, nn.Identity)
    assert not any(isinstance(m, Shrinkage) for m in u.modules())

# ---- TV loss (Eq. 11, typo fixed)

def test_tv_loss_hand_computed():
    assert tv_loss(torch.tensor([[[[0., 1.], [2., 4.]]]])).item() == pytest.approx(18 / 4)
    m = torch.tensor([[1., 2., 4.], [0., 0., 0.], [3., 3., 3.]])
    # horizontal: (1,2,0,0,0,0)² -> 1+4 = 5 ; vertical: (1,2,4)² + (3,3,3)² = 21 + 27 = 48 ; 53 over 9 pixels
    assert tv_loss(m[None, None]).item() == pytest.approx(53 / 9)
    # averaged over samples and channels: two copies give the same value
    assert tv_loss(m.expand(2, 3, 3, 3)).item() == pytest.approx(53 / 9)
    assert tv_loss(torch.ones(2, 2, 1, 1)).item() == 0 and tv_loss(torch.full((1, 1, 4, 4), 3.)).item() == 0
    with pytest.raises(ValueError, match='N×C×h×w'): tv_loss(torch.ones(3, 3))

def test_drsn_tv_is_mean_over_units_of_shrinkage_outputs():
    torch.manual_seed(0)
    net = DRSN(6, 2, stem=4, widths=[4, 6], strides=[1, 2]).eval()
    out = net(torch.randn(3, 6, 5, 5))
    assert out.shape == (3, 2)
    expect = torch.stack([tv_loss(u.shrunk) for u in net.units]).mean()
    torch.testing.assert_close(net.tv, expect)
    assert net.head[4].p == 0.3                                   # Table 1 dropout from the settings

@pytest.mark.parametrize('model', [lambda: DRSN(16, 3, **SMALL), lambda: DRSN(16, 3, shrink=False, **SMALL),
                                   lambda: DNN(16, 3), lambda: TokenTransformer(16, 3, dim=16, heads=2)])
def test_models_shapes_any_map_size(model):
    m = model().eval()
    for hw in [(1, 1), (4, 4), (7, 5)]:
        assert m(torch.randn(2, 16, *hw)).shape == (2, 3)

# ---- complexity (Table 9)

def test_flops_hand_count():
    net = DRSN(4, 2, stem=4, widths=[4], strides=[1])
    c = model_complexity(net, (4, 3, 3))
    # stem 1×1: 2·36·4 = 288; two 3×3 convs: 2·(2·36·4·9) = 5184; threshold FCs: 2·(2·4·4) = 64; head: 2·4·2 = 16
    assert c['gflops'] * 1e9 == pytest.approx(288 + 5184 + 64 + 16)
    assert c['params_m'] * 1e6 == sum(p.numel() for p in net.parameters())

def test_complexity_table_has_every_neural_detector():
    tab = complexity_table((32, 4, 4))
    assert set(tab.index) == {n for n in list_detectors() if DETECTORS[n].neural}
    assert (tab.gflops > 0).all() and (tab.params_m > 0).all()
    # attention is counted: the transformer's FLOPs exceed its linear layers' alone
    tr = TokenTransformer(32, 2)
    lin = sum(2 * 17 * m.in_features * m.out_features for b in tr.blocks for m in b.modules() if isinstance(m, nn.Linear))
    assert tab.loc['transformer', 'gflops'] * 1e9 > lin

# ---- registry, training, evaluation, saving

def test_registry_entries():
    assert {'drsn_tvl', 'drsn', 'cnn', 'dnn', 'transformer'} <= set(list_detectors())
    assert DETECTORS['drsn'].defaults['tv_weight'] == 0 and DETECTORS['drsn_tvl'].defaults['tv_weight'] is None
    d = create_detector('drsn_tvl', (8, 4, 4), ['clean', 'adversarial'], arch=SMALL, progress=False)
    assert d.tv_weight == 0.1 and d.lr == 1e-5 and d.optimizer == 'Adam' and d.preset == 'paper'
    assert create_detector('drsn', (8, 4, 4), ['clean', 'adversarial'], arch=SMALL).tv_weight == 0
    assert not any(isinstance(m, Shrinkage) for m in create_detector('cnn', (8, 4, 4), ['clean', 'a'], arch=SMALL).module.modules())
    with pytest.raises(KeyError, match='registered detectors'): create_detector('svm', (8, 4, 4), ['clean', 'a'])
    with pytest.raises(KeyError, match='unknown options'): create_detector('dnn', (8, 4, 4), ['clean', 'a'], hidden=[4])
    with pytest.raises(KeyError, match='preset'): create_detector('dnn', (8, 4, 4), ['clean', 'a'], preset='fast')

@pytest.mark.parametrize('name', ['drsn_tvl', 'drsn', 'cnn', 'dnn', 'transformer'])
def test_every_detector_learns_an_easy_task(name):
    sets = toy_sets()
    arch = SMALL if name in ('drsn_tvl', 'drsn', 'cnn') else (dict(dim=16, heads=2) if name == 'transformer' else None)
    d = fit_detector(name, sets['train'], sets['valid'], preset='tuned', epochs=4, progress=False, arch=arch)
    m = evaluate(d, sets['test'])
    assert m['accuracy'] > 0.9 and m['auroc'] > 0.95, (name, m)
    assert d.threshold is not None and len(d.history) <= 4 and d.lr_used > 0
    p = d.predict_proba(sets['test'].x)
    assert p.shape == (len(sets['test']), 2) and np.allclose(p.sum(1), 1)

def test_tv_callback_adds_weighted_term_to_the_validation_loss():
    sets = toy_sets((64, 30, 10))
    w = 0.5
    d = fit_detector('drsn_tvl', sets['train'], sets['valid'], preset='paper', lr=1e-3, epochs=3, tv_weight=w, progress=False, arch=SMALL)
    net = d.module.eval()
    with torch.no_grad():
        logits = net(sets['valid'].x)          # one validation batch: 60 rows < 2·batch_size
        expect = F.cross_entropy(logits, sets['valid'].y) + w * net.tv
    # the best checkpoint is reloaded: its recorded validation loss is CE + w·TV of the current weights
    assert d.history.valid_loss.iloc[d.best_epoch] == pytest.approx(expect.item(), rel=1e-4)
    assert d.history.valid_loss.iloc[d.best_epoch] == pytest.approx(d.history.valid_loss.min())
    assert (d.history.valid_tv > 0).all() and {'train_tv', 'valid_tv', 'train_s'} <= set(d.history.columns)

def test_early_stopping_and_presets():
    sets = toy_sets((64, 30, 10))
    g = torch.Generator().manual_seed(5)
    noisy_valid = (sets['valid'].x, torch.randint(0, 2, (len(sets['valid']),), generator=g))   # labels unrelated to the data
    d = fit_detector('dnn', sets['train'], noisy_valid, preset='paper', lr=1e-2, epochs=25, patience=1, progress=False)
    assert len(d.history) < 25 and d.lr_used == 1e-2
    t = create_detector('dnn', (8, 4, 4), ['clean', 'adv'], preset='tuned')
    assert t.lr == 'lr_find' and t.optimizer == 'AdamW' and t.wd == 0.01

def test_same_seed_same_result():
    sets = toy_sets((64, 30, 20))
    a = fit_detector('cnn', sets['train'], sets['valid'], preset='paper', lr=1e-3, epochs=2, progress=False, arch=SMALL, seed=3)
    b = fit_detector('cnn', sets['train'], sets['valid'], preset='paper', lr=1e-3, epochs=2, progress=False, arch=SMALL, seed=3)
    np.testing.assert_allclose(a.predict_proba(sets['test'].x), b.predict_proba(sets['test'].x), atol=1e-6)

def test_save_load_roundtrip_weights_only(tmp_path):
    sets = toy_sets((64, 30, 20))
    d = fit_detector('drsn_tvl', sets['train'], sets['valid'], preset='paper', lr=1e-3, epochs=2, progress=False,
                     arch=dict(stem=8, widths=[8, 12], strides=[1, 2]))
    p = save_detector(d, tmp_path / 'det.pt')
    blob = torch.load(p, weights_only=True)                          # no pickled code inside
    cfg = json.loads(blob['config'])
    assert cfg['name'] == 'drsn_tvl' and cfg['kwargs']['arch']['widths'] == [8, 12] and cfg['threshold'] == d.threshold
    d2 = load_detector(p)
    np.testing.assert_array_equal(d2.predict_proba(sets['test'].x), d.predict_proba(sets['test'].x))
    assert d2.threshold == d.threshold and d2.classes == d.classes and d2.tv_weight == d.tv_weight
    # the Detector protocol: logit = log P(adv)/P(clean) of the network (differentiable), detect = flags at the threshold
    x = sets['test'].x
    assert torch.equal(d2.logit(x), d.logit(x))
    np.testing.assert_allclose(torch.sigmoid(d.logit(x).detach().double()).numpy(), d.p_adversarial(x), atol=1e-6)
    xg = x.clone().requires_grad_(True); d.logit(xg).sum().backward(); assert xg.grad.abs().sum() > 0
    assert np.array_equal(d.detect(x), d.p_adversarial(x) > d.threshold) and d.detect(x).dtype == bool
    with pytest.raises(FeatureError, match='expected features of shape'): d.logit(x[:, :4])
    fresh = create_detector('dnn', (8, 4, 4), ['clean', 'a'])
    with pytest.raises(RuntimeError, match='fit'): fresh.logit(x)
    with pytest.raises(RuntimeError, match='fit'): fresh.detect(x)
    d.threshold = None
    with pytest.raises(RuntimeError, match='no decision threshold'): d.detect(x)
    torch.save({'something': torch.ones(1)}, tmp_path / 'other.pt')
    with pytest.raises(ValueError, match='not a saved drsn_tvl detector'): load_detector(tmp_path / 'other.pt')
    with pytest.raises(FileNotFoundError): load_detector(tmp_path / 'missing.pt')
    with pytest.raises(RuntimeError, match='not fitted'): save_detector(create_detector('dnn', (8, 4, 4), ['clean', 'a']), tmp_path / 'x.pt')

def test_a_non_neural_detector_fits_the_registry(tmp_path):
    "The interface later detectors (KD, LID, Mahalanobis, random forest...) use: a Detector subclass from a registry entry."
    class Centroid(Detector):
        def _fit(self, x, y, valid):
            v = x.mean((2, 3))
            self.mu = torch.stack([v[y == k].mean(0) for k in range(self.n_classes)])
        def _predict_proba(self, x, batch_size):
            return torch.softmax(-torch.cdist(x.mean((2, 3)), self.mu), 1).numpy()
        def _logit(self, x):
            d = -torch.cdist(x.mean((2, 3)), self.mu)
            return torch.logsumexp(d[:, 1:], 1) - d[:, 0]
        def _state_dict(self): return {'mu': self.mu}
        def _load_state_dict(self, state): self.mu = state['mu']

    @register_detector('centroid_test', neural=False, paper='test only')
    def centroid(in_shape, classes, **kw):
        "Nearest class centroid of pooled features."
        return Centroid(in_shape, classes, **kw)
    try:
        sets = toy_sets()
        d = fit_detector('centroid_test', sets['train'], sets['valid'])
        assert d.name == 'centroid_test' and evaluate(d, sets['test'])['accuracy'] > 0.9
        assert np.isnan(d.complexity()['params_m'])
        d2 = load_detector(save_detector(d, tmp_path / 'c.pt'))
        np.testing.assert_allclose(d2.predict_proba(sets['test'].x), d.predict_proba(sets['test'].x))
        assert d2.fitted and d2.inputs == 'features' and not d2.takes_images
        np.testing.assert_allclose(torch.sigmoid(d2.logit(sets['test'].x).double()).numpy(), d.p_adversarial(sets['test'].x), atol=1e-6)
        assert np.array_equal(d2.detect(sets['test'].x), d.p_adversarial(sets['test'].x) > d.threshold)
        assert 'centroid_test' not in complexity_table((8, 4, 4)).index
    finally:
        DETECTORS.pop('centroid_test', None)

# ---- detection sets

def test_make_detection_set_round_robin_balanced():
    n = 12
    clean = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1)
    names, src = [], []
    for a, ok in (('fgsm', range(n)), ('pgd', [i for i in range(n) if i % 3]), ('noise', range(0, n - 1))):
        names += [a] * len(ok); src += list(ok)
    adv = 100 + torch.arange(len(names), dtype=torch.float32).reshape(-1, 1, 1, 1)
    ds = make_detection_set(clean, adv, names, src, task='detect')
    assert isinstance(ds, DetectionSet) and ds.classes == ['clean', 'adversarial']
    assert (ds.y == 0).sum() == (ds.y == 1).sum() == n and ds.n_dropped == 0
    att = ds.attack[ds.y.numpy() == 1]
    # turn k = source index: fgsm, pgd, noise, ...; pgd missing for multiples of 3, noise for the last image
    expect = []
    order = ['fgsm', 'pgd', 'noise']
    for k in range(n):
        for j in range(3):
            a = order[(k + j) % 3]
            if (a != 'pgd' or k % 3) and (a != 'noise' or k < n - 1): expect.append(a); break
    assert att.tolist() == expect
    # every adversarial row really is the right (source, attack) row
    lookup = {(s, a): 100 + i for i, (s, a) in enumerate(zip(src, names))}
    for x, s, a in zip(ds.x.flatten().tolist(), ds.source, ds.attack):
        assert x == (s if a == 'clean' else lookup[(s, a)])

def test_make_detection_set_identify_and_errors():
    clean = torch.zeros(3, 2, 2, 2)
    adv = torch.ones(4, 2, 2, 2)
    di = make_detection_set(clean, adv, ['pgd', 'fgsm', 'pgd', 'fgsm'], [0, 0, 2, 2], task='identify', attack_order=['fgsm', 'pgd'])
    assert di.classes == ['clean', 'fgsm', 'pgd'] and di.y.tolist() == [0, 1, 2, 0, 1, 2] and di.n_dropped == 1
    with pytest.raises(FeatureError, match='reserved'): make_detection_set(clean, adv, ['clean'] * 4, [0, 1, 2, 0])
    with pytest.raises(FeatureError, match='two adversarial rows'): make_detection_set(clean, adv, ['a'] * 4, [0, 0, 1, 2])
    with pytest.raises(FeatureError, match='source='): make_detection_set(clean, adv, ['a'] * 4)
    with pytest.raises(FeatureError, match=r'\(2, 2, 2\)'): make_detection_set(clean, torch.ones(4, 3, 2, 2), ['a'] * 4, [0, 1, 2, 0])
    with pytest.raises(FeatureError, match='indices'): make_detection_set(clean, adv, ['a', 'b', 'c', 'd'], [0, 1, 2, 3])
    with pytest.raises(KeyError, match='task'): make_detection_set(clean, adv, ['a'] * 4, [0, 1, 2, 0], task='classify')
    with pytest.raises(FeatureError, match='lacks'): make_detection_set(clean, adv, ['a', 'b', 'a', 'b'], [0, 0, 1, 1], attack_order=['a'])

# ---- metrics

def test_binary_metrics_by_hand():
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    p1 = np.array([.1, .2, .3, .6, .7, .4, .8, .9, .95, .55])
    m = detection_metrics(y, np.stack([1 - p1, p1], 1), threshold=0.65)
    # argmax predictions: 0 0 0 1 1 | 0 1 1 1 1 -> TP 4, FP 2, TN 3, FN 1
    assert m['accuracy'] == pytest.approx(7 / 10) and m['precision'] == pytest.approx(4 / 6)
    assert m['sensitivity'] == pytest.approx(4 / 5) and m['f1'] == pytest.approx(2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5))
    # AUROC: pairs (adv > clean) out of 25: .4 beats 3, .55 beats 3, .8/.9/.95 beat 5 -> 21
    assert m['auroc'] == pytest.approx(21 / 25)
    assert m['tpr_at_fpr'] == pytest.approx(3 / 5) and m['fpr'] == pytest.approx(1 / 5)
    assert m['confusion'].tolist() == [[3, 2], [1, 4]]

def test_multiclass_macro_metrics_by_hand():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    proba = np.eye(3)[pred] * 0.8 + 0.2 / 3
    m = detection_metrics(y, proba)
    prec = [1 / 2, 2 / 3, 1]; rec = [1 / 2, 1, 1 / 2]
    f1 = [2 * p * r / (p + r) for p, r in zip(prec, rec)]
    assert m['accuracy'] == pytest.approx(4 / 6)
    assert m['precision'] == pytest.approx(np.mean(prec)) and m['sensitivity'] == pytest.approx(np.mean(rec))
    assert m['f1'] == pytest.approx(np.mean(f1)) and m['confusion'].shape == (3, 3)

def test_threshold_at_fpr_property():
    rng = np.random.default_rng(0)
    for n0 in (1, 7, 20, 101, 1000):
        s = rng.normal(size=n0 + 50)
        is_adv = np.r_[np.zeros(n0, bool), np.ones(50, bool)]
        for fpr in (0.0, 0.05, 0.2):
            t = threshold_at_fpr(is_adv, s, fpr)
            flagged = (s[:n0] > t).sum()
            assert flagged <= np.floor(fpr * n0)
            assert flagged == np.floor(fpr * n0)            # no ties in continuous scores: exactly the budget
    with pytest.raises(FeatureError, match='no clean'): threshold_at_fpr(np.ones(3, bool), np.ones(3))

def test_per_attack_rates_in_evaluate():
    sets = toy_sets()
    d = fit_detector('dnn', sets['train'], sets['valid'], preset='tuned', epochs=3, progress=False)
    m = evaluate(d, sets['test'])
    assert set(m['per_attack']) == {'clean', 'noise'} and set(m['per_attack_at_fpr']) == {'clean', 'noise'}
    assert m['per_attack']['noise'] > 0.9 and m['per_attack']['clean'] < 0.1

# ---- bad input

def test_bad_input_errors():
    sets = toy_sets((64, 30, 10))
    tr, va = sets['train'], sets['valid']
    with pytest.raises(FeatureError, match='single class'):
        fit_detector('dnn', (tr.x, torch.zeros(len(tr), dtype=torch.long)), va)
    with pytest.raises(FeatureError, match='empty'): fit_detector('dnn', tr, (va.x[:0], va.y[:0]))
    with pytest.raises(FeatureError, match='empty'): fit_detector('dnn', (tr.x[:0], tr.y[:0]), va)
    with pytest.raises(FeatureError, match='validation split'):
        create_detector('dnn', (8, 4, 4), ['clean', 'adversarial']).fit(tr.x, tr.y)
    with pytest.raises(FeatureError, match='dtype'): fit_detector('dnn', (tr.x.long(), tr.y), va)
    with pytest.raises(FeatureError, match='integer'): fit_detector('dnn', (tr.x, tr.y.float()), va)
    bad = tr.x.clone(); bad[3, 0, 0, 0] = float('nan')
    with pytest.raises(FeatureError, match='NaN/inf'): fit_detector('dnn', (bad, tr.y), va)
    with pytest.raises(FeatureError, match=f'expected {len(tr)} labels'): fit_detector('dnn', (tr.x, tr.y[:-1]), va)
    with pytest.raises(FeatureError, match='N×C×h×w'): as_features(torch.rand(4, 8, 4))
    d = fit_detector('dnn', tr, va, preset='paper', lr=1e-3, epochs=1, progress=False)
    with pytest.raises(FeatureError, match=r'\(8, 4, 4\)'): d.predict_proba(torch.rand(2, 8, 5, 5))
    with pytest.raises(FeatureError, match=r'\(8, 4, 4\)'): d.predict_proba(torch.rand(2, 16, 4, 4))
    with pytest.raises(FeatureError, match='NaN/inf'): d.predict_proba(torch.full((2, 8, 4, 4), float('inf')))
    with pytest.raises(FeatureError, match='out of range'): evaluate(d, (va.x, va.y + 1))
    with pytest.raises(RuntimeError, match='fit'): create_detector('dnn', (8, 4, 4), ['clean', 'a']).predict_proba(va.x)
    # numpy float16 features (the feature cache's dtype) are accepted and converted
    assert d.predict_proba(va.x.numpy().astype(np.float16)).shape == (len(va), 2)

# ---- end to end on images and the command line

def test_image_detector_end_to_end(tmp_path):
    import timm
    from drsn_tvl.model import DetectionPipeline, image_feature_maps
    torch.manual_seed(0)
    bb = timm.create_model('tf_efficientnet_lite0', pretrained=False, num_classes=0).eval()
    rng = np.random.default_rng(0)
    imgs = rng.integers(60, 200, (24, 32, 32, 3), dtype=np.uint8)
    noisy = np.clip(imgs.astype(int) + rng.choice([-40, 40], imgs.shape), 0, 255).astype(np.uint8)
    fc, fa = image_feature_maps(imgs, bb, 32), image_feature_maps(noisy, bb, 32)
    assert fc.shape == (24, 1280, 1, 1)
    ds = make_detection_set(fc, fa, ['noise'] * 24)
    d = fit_detector('dnn', (ds.x[:32], ds.y[:32]), (ds.x[32:], ds.y[32:]), preset='paper', lr=1e-3, epochs=1, progress=False,
                     classes=['clean', 'noise'])
    pipe = DetectionPipeline(d, 'tf_efficientnet_lite0', 32, clahe=True, extractor=bb)
    sc = pipe.score(imgs[:5])
    assert list(sc.columns[:2]) == ['p_adversarial', 'predicted'] and len(sc) == 5
    assert set(sc.predicted) <= {'clean', 'noise'} and ((0 <= sc.p_adversarial) & (sc.p_adversarial <= 1)).all()
    np.testing.assert_allclose(sc.p_adversarial, 1 - sc.p_clean)
    # float tensors in [0,1] of another size are resized; a single H×W×3 image works
    assert len(pipe.score(torch.rand(2, 3, 40, 40))) == 2 and len(pipe.score(imgs[0])) == 1
    p = pipe.save(tmp_path / 'pipe.pt')                          # a given backbone is saved with the detector
    torch.load(p, weights_only=True)
    pipe2 = DetectionPipeline.load(p)
    np.testing.assert_allclose(pipe2.score(imgs[:5]).p_adversarial, sc.p_adversarial, atol=1e-6)
    with pytest.raises(FeatureError, match='uint8'): pipe.score(imgs.astype(np.float32))
    # the attacker's view of the same pipeline: p_adversarial = the table's, logit = its log-odds, flags at the threshold
    x = torch.from_numpy(imgs[:5]).permute(0, 3, 1, 2).float() / 255
    np.testing.assert_allclose(pipe.p_adversarial(x), sc.p_adversarial, atol=1e-6)
    xg = x.clone().requires_grad_(True)
    lg = pipe.logit(xg); lg.sum().backward()
    assert xg.grad.abs().sum() > 0
    np.testing.assert_allclose(torch.sigmoid(lg.detach().double()).numpy(), pipe.p_adversarial(x), atol=1e-2)
    assert torch.equal(pipe.flagged(x), torch.from_numpy(d.detect(pipe.inputs(x))))
    with pytest.raises(ValueError, match='feature extractor'): DetectionPipeline(d)
    with pytest.raises(FeatureError, match=r'\[0, 1\]'): pipe.score(torch.rand(2, 3, 32, 32) * 2)

def test_cli_detectors(capsys):
    from drsn_tvl.cli import main
    assert main(['detectors', '--in-shape', '16,3,3']) in (0, None)
    out = capsys.readouterr().out
    assert 'drsn_tvl' in out and 'transformer' in out and 'gflops' in out
    assert main(['detectors', '--in-shape', '16,3']) == 2

def test_loss_setting_and_detection_set_as_valid(monkeypatch):
    monkeypatch.setenv('DRSN_TVL_LOSS', 'ce')
    assert create_detector('drsn_tvl', (8, 4, 4), ['clean', 'a'], arch=SMALL).tv_weight == 0
    monkeypatch.setenv('DRSN_TVL_LOSS', 'mse')
    with pytest.raises(ValueError, match="'mse'"): create_detector('drsn_tvl', (8, 4, 4), ['clean', 'a'], arch=SMALL)
    monkeypatch.delenv('DRSN_TVL_LOSS')
    sets = toy_sets((64, 30, 10))
    d = create_detector('dnn', (8, 4, 4), sets['train'].classes, preset='paper', lr=1e-3, epochs=1, progress=False)
    d.fit(sets['train'].x, sets['train'].y, sets['valid'])         # a DetectionSet as the validation split
    assert d.fitted and d.threshold is not None

def test_trainer_option_errors():
    for kw in (dict(epochs=0), dict(patience=0), dict(batch_size=1)):
        with pytest.raises(ValueError, match='batch_size >= 2'): create_detector('dnn', (8, 4, 4), ['clean', 'a'], **kw)
    with pytest.raises(KeyError, match='optimizer'): create_detector('dnn', (8, 4, 4), ['clean', 'a'], optimizer='Lion')


# ---- one configuration: DetectorConfig built once at the entry points and passed down

def test_detector_config_values_overrides_and_errors(monkeypatch):
    from drsn_tvl.model import DetectorConfig
    c = DetectorConfig.from_settings()
    assert (c.dropout, c.drsn_widths, c.drsn_stem, c.epochs, c.seed, c.target_fpr) == (0.3, (64, 64), 64, 30, 42, 0.05)
    assert DetectorConfig.section == 'detector'
    monkeypatch.setenv('DRSN_TVL_DROPOUT', '0.25')
    assert DetectorConfig.from_settings().dropout == 0.25 and DetectorConfig.from_settings(dropout=0.5).dropout == 0.5
    assert c.replace(epochs=3).epochs == 3 and c.epochs == 30 and c.replace(epochs=None).epochs == 30
    with pytest.raises(KeyError, match='unknown key'): DetectorConfig.from_settings(epoch=3)
    with pytest.raises(ValueError, match='epochs'): c.replace(epochs='many')
    with pytest.raises(ValueError, match='dropout'): c.replace(dropout=1.0)
    with pytest.raises(ValueError, match='drsn_stem'): c.replace(drsn_stem=0)
    with pytest.raises(ValueError, match='target_fpr'): c.replace(target_fpr=2)
    with pytest.raises(KeyError, match='task'): c.replace(detector_task='classify')


def test_config_is_passed_down_and_nothing_below_reads_the_settings(monkeypatch):
    import drsn_tvl.core
    from drsn_tvl.model import DetectorConfig, DetectionPipeline
    cfg = DetectorConfig.from_settings().replace(drsn_stem=8, drsn_widths=(8,), dropout=0.1, epochs=2, target_fpr=0.2,
                                                 detector='dnn', feature_batch_size=7, img_size=16)
    def no_settings(*a, **k): raise AssertionError('settings read below an entry point')
    monkeypatch.setattr(drsn_tvl.core, 'get_settings', no_settings)
    sets = {s: make_detection_set(*toy(n, seed=i), ['noise'] * n, cfg=cfg) for i, (s, n) in enumerate([('train', 64), ('valid', 32)])}
    det = fit_detector(train=sets['train'], valid=sets['valid'], cfg=cfg, progress=False)      # detector='dnn' from cfg
    assert det.name == 'dnn' and det.epochs == 2 and det.module.hparams['dropout'] == 0.1 and det.target_fpr == 0.2
    d2 = create_detector('drsn_tvl', (8, 4, 4), ['clean', 'a'], cfg=cfg, epochs=3, progress=False)
    assert d2.epochs == 3 and (d2.module.hparams['stem'], d2.module.hparams['widths'], d2.module.hparams['dropout']) == (8, [8], 0.1)
    assert d2.tv_weight == cfg.tv_weight and create_detector('drsn', (8, 4, 4), ['clean', 'a'], cfg=cfg).tv_weight == 0
    di = make_detection_set(*toy(4), ['noise'] * 4, cfg=cfg.replace(detector_task='identify'))
    assert di.task == 'identify' and di.classes == ['clean', 'noise']
    assert complexity_table((8, 4, 4), cfg=cfg).loc['drsn_tvl', 'params_m'] == model_complexity(d2.module, (8, 4, 4))['params_m']
    d3 = create_detector('dnn', (3, 16, 16), ['clean', 'a'], cfg=cfg)
    d3.inputs, d3.fitted = 'images', True                              # read the images themselves: no backbone needed
    pipe = DetectionPipeline(d3, cfg=cfg)
    assert (pipe.img_size, pipe.batch_size) == (16, 7)


def test_files_saved_before_the_config_still_load(tmp_path):
    "A detector file as the code before DetectorConfig wrote it (its JSON config, verbatim) loads to the same detector."
    from drsn_tvl.model import _pack
    old = {'name': 'drsn_tvl', 'in_shape': [8, 4, 4], 'classes': ['clean', 'adversarial'],
           'kwargs': {'arch': {'stem': 4, 'widths': [4], 'strides': [1], 'shrink': True, 'reduction': 1, 'dropout': 0.3},
                      'preset': 'paper', 'lr': 1e-05, 'epochs': 30, 'batch_size': 32, 'tv_weight': 0.1, 'patience': 5,
                      'optimizer': 'Adam', 'wd': 0.0, 'seed': 42}, 'threshold': 0.5, 'target_fpr': 0.05}
    d = create_detector('drsn_tvl', (8, 4, 4), ['clean', 'adversarial'], arch=dict(stem=4, widths=[4]), progress=False)
    blob = dict(_pack(d.load_state_dict(d.state_dict())), config=json.dumps(old))
    torch.save(blob, tmp_path / 'old.pt')
    back = load_detector(tmp_path / 'old.pt')
    assert back.config() == old
    assert all(torch.equal(v, d.state_dict()[k]) for k, v in back.state_dict().items())


# ---- detectors on the victim's own maps (issue 14)
def test_pipeline_on_victim_source_saves_the_victim(tmp_path):
    "A DetectionPipeline on feature_source='victim' / 'both' maps: differentiable through the victim, saved with its weights, reloaded equal."
    from drsn_tvl.victim import Victim
    from drsn_tvl.features import FeatureConfig, create_extractor
    from drsn_tvl.model import DetectionPipeline, image_feature_maps
    torch.manual_seed(0)
    vic = Victim('tf_efficientnet_lite0', 2, pretrained=False).eval()
    g = torch.Generator().manual_seed(0)
    xi = torch.rand(24, 3, 32, 32, generator=g); xa = (xi + 0.3 * torch.randn(xi.shape, generator=g)).clamp(0, 1)
    for src in ('victim', 'both'):
        sx = create_extractor('tf_efficientnet_lite0', cfg=FeatureConfig.from_settings(feature_source=src, victim_grid=2), victim=vic)
        fm = lambda x: image_feature_maps(x, sx, 32, clahe=False)
        ds = make_detection_set(fm(xi), fm(xa), ['noise'] * len(xi))
        for name in ('drsn_tvl', 'dnn'):                                     # every detector reads these maps unchanged
            det = fit_detector(name, ds, ds, epochs=1, progress=False, seed=0, arch=SMALL if name == 'drsn_tvl' else None)
            pl = DetectionPipeline(det, extractor=sx, clahe=False, img_size=32)
            xg = xa[:2].clone().requires_grad_(True)
            pl.logit(xg).sum().backward()
            assert xg.grad.abs().sum() > 0
            back = DetectionPipeline.load(pl.save(tmp_path / f'{src}-{name}.pt'))
            assert back.config()['feature_source'] == src and back.extractor.kind == src
            assert np.allclose(back.p_adversarial(xa), pl.p_adversarial(xa), atol=1e-6)
