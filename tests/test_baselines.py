"Tests of drsn_tvl.baselines: every classic detector on a tiny victim, saving, errors, squeezers, the forest, the adaptive attacker."
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from drsn_tvl.attacks import run_attack
from drsn_tvl.core import to_8bit
from drsn_tvl.victim import train_victim, victim_splits
from drsn_tvl.baselines import BASELINES, VictimMissing, union_thresholds, adaptive_attack, adaptive_table, bit_depth, bpda, classic_table, median_filter, takes_images
from drsn_tvl.data import load_arrays
from drsn_tvl.core import FeatureError
from drsn_tvl.features import create_extractor
from drsn_tvl.model import DetectionPipeline, create_detector, evaluate, fit_detector, image_feature_maps, load_detector, make_detection_set, save_detector

N = dict(train=80, valid=40, test=40)




@pytest.fixture(scope='module')
def world(tmp_path_factory):
    "lite0 victim on the synthetic phantoms at 40 px, clean and noisy images per split, lite0 feature extractor."
    cache = tmp_path_factory.mktemp('cache')
    victim = train_victim('synthetic', img_size=40, epochs=3, lr=3e-3, cache_dir=cache, progress=False)
    arrays = {s: load_arrays(ds, cache_dir=cache, progress=False) for s, ds in victim_splits(victim.meta['config']).items()}
    xs = {s: torch.from_numpy(a[:N[s]]).permute(0, 3, 1, 2).float() / 255 for s, (a, _) in arrays.items()}
    ys = {s: torch.from_numpy(l[:N[s]]) for s, (_, l) in arrays.items()}
    g = torch.Generator().manual_seed(0)
    noisy = {s: to_8bit((x[:, :1] + 0.2 * torch.randn(x[:, :1].shape, generator=g)).clamp(0, 1).expand_as(x)) for s, x in xs.items()}
    fx = create_extractor('tf_efficientnet_lite0')
    fm = lambda x: image_feature_maps(x, fx, 40, clahe=False)
    img = {s: make_detection_set(xs[s], noisy[s], ['noise'] * len(xs[s])) for s in xs}
    feat = {s: make_detection_set(fm(xs[s]), fm(noisy[s]), ['noise'] * len(xs[s])) for s in xs}
    return dict(victim=victim, xs=xs, ys=ys, noisy=noisy, fx=fx, fm=fm, img=img, feat=feat, cache=cache)


def fit(world, name, **kw):
    sets = world['img'] if takes_images(name) else world['feat']
    extra = dict(victim=world['victim']) if takes_images(name) else {}
    return fit_detector(name, sets['train'], sets['valid'], seed=0, **extra, **kw), sets


@pytest.fixture(scope='module')
def fitted(world):
    return {n: fit(world, n)[0] for n in BASELINES if n != 'squeeze'}


# ---------------------------------------------------------------- detection of an obvious perturbation
@pytest.mark.parametrize('name', [n for n in BASELINES if n not in ('squeeze', 'msp')])    # the two learn nothing from attacks
def test_baseline_separates_heavy_noise(world, fitted, name):
    det = fitted[name]
    sets = world['img'] if takes_images(name) else world['feat']
    m = evaluate(det, sets['test'])
    assert m['auroc'] > 0.9, (name, m['auroc'])
    assert det.threshold is not None and m['fpr'] <= 0.35          # threshold from valid (40 images): near 5 % on test


class Checker(nn.Module):
    "A victim that reads a 2×2 checkerboard pattern: class 1 if the pattern is present, class 0 (margin 1 logit) otherwise."
    def __init__(self, k=60.):
        super().__init__()
        self.k, self.head = k, nn.Linear(1, 2)
        with torch.no_grad(): self.head.weight.copy_(torch.tensor([[0.], [1.]])); self.head.bias.copy_(torch.tensor([1., 0.]))
    def forward(self, x):
        cb = ((torch.arange(x.shape[-2])[:, None] + torch.arange(x.shape[-1])[None]) % 2 * 2 - 1).to(x)
        return self.head(self.k * (x * cb).mean((1, 2, 3))[:, None])


def test_squeeze_detects_what_squeezing_removes(world):
    "Feature squeezing's mechanism: a perturbation the median filter removes flips the victim back; clean images barely move."
    v = Checker()
    xs = world['xs']
    cb = ((torch.arange(40)[:, None] + torch.arange(40)[None]) % 2).float()
    adv = {s: to_8bit((x + 16 / 255 * cb).clamp(0, 1)) for s, x in xs.items()}
    with torch.no_grad(): assert (v(adv['test']).argmax(1) == 1).float().mean() > 0.9 and (v(xs['test']).argmax(1) == 0).all()
    sets = {s: make_detection_set(xs[s], adv[s], ['checker'] * len(xs[s])) for s in xs}
    det = fit_detector('squeeze', sets['train'], sets['valid'], victim=v, seed=0)
    assert evaluate(det, sets['test'])['auroc'] > 0.9
    # and the natural images of the noise set are not separated by this victim: squeezing is not a generic noise detector
    with torch.no_grad(): assert det.distances(xs['test']).max() < 0.2


def test_msp_flags_the_torn_victim_not_the_confident_one(world):
    "The softmax gap: images the Checker victim sees at its decision boundary are flagged, confident ones are not, and they keep distinct scores."
    v, xs = Checker(), world['xs']
    cb = ((torch.arange(40)[:, None] + torch.arange(40)[None]) % 2).float()
    # the checkerboard strength that puts each image on the boundary (both logits 1): what a minimal attack does
    torn = lambda x: (x + (1 - v.k * (x * (cb * 2 - 1)).mean((1, 2, 3)))[:, None, None, None] / (v.k * cb.mean()) * cb).clamp(0, 1)
    sets = {s: make_detection_set(x, torn(x), ['torn'] * len(x)) for s, x in xs.items()}
    det = fit_detector('msp', sets['train'], sets['valid'], victim=v, seed=0)
    m = evaluate(det, sets['test'])
    assert m['auroc'] > 0.99 and m['tpr_at_fpr'] > 0.95, m
    clean = det.p_adversarial(xs['test'])
    assert len(np.unique(clean)) == len(clean) and clean.max() < 0.9       # confident: no tie at the threshold
    det.victim = None
    with pytest.raises(VictimMissing, match='attach'): det.p_adversarial(xs['test'][:2])


@pytest.mark.parametrize('k,n,seed', [(2, 400, 0), (3, 150, 1), (2, 37, 2)])
def test_union_thresholds_spend_one_budget(k, n, seed):
    "The OR rule's thresholds: at most 5 % of the clean rows flagged by any member, and not much less (the budget is used)."
    g = np.random.default_rng(seed)
    s = [g.normal(size=n) for _ in range(k)]
    t = union_thresholds(s, 0.05)
    u = np.any([si > ti for si, ti in zip(s, t)], axis=0).mean()
    assert u <= 0.05 and (u > 0.05 - k / n or n * 0.05 < k), (u, k, n)
    with pytest.raises(ValueError, match='same length'): union_thresholds([s[0], s[1][:-1]])
    with pytest.raises(ValueError, match='fpr'): union_thresholds(s, 1.5)


def test_median_filter_and_bit_depth_match_references():
    from scipy.ndimage import median_filter as scipy_median
    x = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    for k in (2, 3):
        ref = scipy_median(x.numpy(), size=(1, 1, k, k), mode='nearest')
        assert np.allclose(median_filter(x, k).numpy(), ref)
    xb = x.clone().requires_grad_(True)
    y = bit_depth(xb, 3)
    assert torch.allclose(y, (x * 7).round() / 7)
    y.sum().backward()
    assert torch.equal(xb.grad, torch.ones_like(x))                 # BPDA: identity gradient
    z = bpda(lambda t: t * 0, xb)
    assert torch.equal(z, torch.zeros_like(x))


# ---------------------------------------------------------------- the Detector protocol
@pytest.mark.parametrize('name', [n for n in BASELINES if n != 'squeeze'])
def test_protocol_logit_detect_and_inputs(world, fitted, name):
    det = fitted[name]
    assert det.inputs == ('images' if takes_images(name) else 'features') and det.takes_images == takes_images(name)
    with pytest.raises(AttributeError): det.takes_images = True                      # a read-only alias of `inputs`
    x = (world['img'] if takes_images(name) else world['feat'])['test'].x[:10]
    p = det.p_adversarial(x)
    np.testing.assert_allclose(torch.sigmoid(det.logit(x).detach().double()).numpy(), p, atol=1e-6)   # logit = log-odds of P(adv)
    assert np.array_equal(det.detect(x), p > det.threshold)
    with pytest.raises(FeatureError, match='expected'): det.logit(x[:, :2])
    # the pipeline gives the detector's own numbers from images
    sc = DetectionPipeline(det, extractor=world['fx'], clahe=False, img_size=40)
    xi = world['xs']['test'][:10]
    inp = xi if takes_images(name) else world['fm'](xi)
    np.testing.assert_array_equal(sc.p_adversarial(xi), det.p_adversarial(inp))
    assert torch.equal(sc.flagged(xi), torch.from_numpy(det.detect(inp)))
    np.testing.assert_allclose(torch.sigmoid(sc.logit(xi).detach().double()).numpy(), det.p_adversarial(inp), atol=1e-3)


def test_protocol_needs_fit_and_threshold(world):
    img = world['img']
    det = create_detector('squeeze', (3, 40, 40), ['clean', 'adversarial'], victim=world['victim'])
    with pytest.raises(RuntimeError, match='fit'): det.logit(img['test'].x[:2])
    det.fit(img['train'].x, img['train'].y)                                          # no validation split: no threshold
    with pytest.raises(RuntimeError, match='threshold'): det.detect(img['test'].x[:2])
    with pytest.raises(RuntimeError, match='threshold'): DetectionPipeline(det, img_size=40).threshold_logit


# ---------------------------------------------------------------- the forest
def test_dfeat_equals_sklearn_and_soft_forest_has_gradients(world, fitted):
    rf = fitted['dfeat']
    f = world['feat']['test'].x
    assert np.allclose(rf.predict_proba(f)[:, 1], rf._sk.predict_proba(f.mean((2, 3)).numpy())[:, 1], atol=1e-6)
    x = f[:8].clone().requires_grad_(True)
    s = rf.logit(x)
    p_hard = torch.from_numpy(rf.p_adversarial(f[:8])).float()
    assert torch.allclose(torch.sigmoid(s.detach()), p_hard.clamp(1e-6, 1 - 1e-6), atol=1e-5)    # value: the hard forest
    s.sum().backward()
    assert x.grad.abs().sum() > 0                                                                # gradient: the soft forest


# ---------------------------------------------------------------- saving, attaching, errors
@pytest.mark.parametrize('name', [n for n in BASELINES if n not in ('squeeze', 'mahalanobis_pp')])
def test_save_load_round_trip(world, fitted, tmp_path, name):
    det = fitted[name]
    x = (world['img'] if takes_images(name) else world['feat'])['test'].x[:12]
    blob = torch.load(save_detector(det, tmp_path / 'd.pt'), weights_only=True)     # tensors and plain values only
    det2 = load_detector(tmp_path / 'd.pt')
    if takes_images(name) and det.needs_victim:
        with pytest.raises(VictimMissing, match='attach'): det2.p_adversarial(x)
        det2.attach(world['victim'])
    assert det.needs_victim == (name != 'srm')                                    # srm reads pixels only
    assert np.allclose(det2.p_adversarial(x), det.p_adversarial(x), atol=1e-5)
    assert det2.threshold == det.threshold and det2.kwargs == det.kwargs
    assert 'format' in blob


def test_attach_checks_the_victim(world, fitted, tmp_path):
    other = Checker()
    det2 = load_detector(save_detector(fitted['mahalanobis'], tmp_path / 'm.pt'))
    with pytest.raises(ValueError, match='victim'): det2.attach(other)
    det2.attach(world['victim'])                                                        # the right one is accepted


def test_errors(world):
    img = world['img']
    with pytest.raises(VictimMissing, match='det.attach'): fit_detector('kd_bu', img['train'], img['valid'])
    with pytest.raises(FeatureError, match='3×H×W'): create_detector('lid', (1280, 2, 2), ['clean', 'adversarial'])
    with pytest.raises(FeatureError, match='binary'): create_detector('squeeze', (3, 40, 40), ['clean', 'fgsm', 'pgd'])
    with pytest.raises(KeyError, match='unknown options'): create_detector('dfeat', (8, 1, 1), ['clean', 'adv'], depth=3)
    with pytest.raises(ValueError, match='lid_k'): create_detector('lid', (3, 40, 40), ['clean', 'adv'], k=50, batch=20)
    det = fit_detector('squeeze', img['train'], img['valid'], victim=world['victim'], seed=0)
    with pytest.raises(FeatureError, match=r'\[0, 1\]'): det.p_adversarial(img['test'].x[:2] * 3)
    with pytest.raises(FeatureError, match='expected feature maps of shape'): det.p_adversarial(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match='feature extractor'): DetectionPipeline(fit(world, 'dfeat')[0])
    with pytest.raises(ValueError, match="kind"): adaptive_attack(world['victim'], det, img['test'].x[:2], [0, 0], kind='fgsm')
    with pytest.raises(KeyError, match='test'): classic_table(world['victim'], world['fx'], {'train': {}, 'valid': {}})


# ---------------------------------------------------------------- reproducibility
def test_seeded_reproducibility(world):
    a, sets = fit(world, 'lid'); b, _ = fit(world, 'lid')
    x = sets['test'].x[:10]
    assert np.array_equal(a.p_adversarial(x), b.p_adversarial(x))
    c, _ = fit(world, 'dfeat'); d, _ = fit(world, 'dfeat')
    assert np.array_equal(c.p_adversarial(world['feat']['test'].x), d.p_adversarial(world['feat']['test'].x))
    sc = DetectionPipeline(a, clahe=False, img_size=40)
    xs, ys = world['xs']['test'][:6], world['ys']['test'][:6]
    r1 = adaptive_attack(world['victim'], sc, xs, ys, eps=4 / 255, steps=3, seed=3)[0]
    r2 = adaptive_attack(world['victim'], sc, xs, ys, eps=4 / 255, steps=3, seed=3)[0]
    assert torch.equal(r1, r2)


# ---------------------------------------------------------------- the adaptive attacker
@pytest.fixture(scope='module')
def drsn(world):
    "DRSN-TVL on lite0 maps of clean vs FGSM 8/255 images (every image attacked)."
    v, xs, ys, fm = world['victim'], world['xs'], world['ys'], world['fm']
    adv = {s: run_attack('fgsm', v, xs[s], ys[s], eps=8 / 255)[0] for s in xs}
    sets = {s: make_detection_set(fm(xs[s]), fm(adv[s]), ['fgsm'] * len(xs[s])) for s in xs}
    return fit_detector('drsn_tvl', sets['train'], sets['valid'], arch=dict(stem=16, widths=[16]), preset='tuned', epochs=6,
                        progress=False, seed=0)


@pytest.mark.parametrize('which', ['drsn_tvl', 'mahalanobis'])
@pytest.mark.parametrize('kind', ['pgd', 'cw'])
def test_adaptive_attack_lowers_the_detector_score(world, fitted, drsn, which, kind):
    v = world['victim']
    det = drsn if which == 'drsn_tvl' else fitted[which]
    sc = DetectionPipeline(det, extractor=world['fx'], clahe=False, img_size=40)
    x, y = world['xs']['test'][:16], world['ys']['test'][:16]
    with torch.no_grad(): ok = v(x).argmax(1) == y
    x, y = x[ok], y[ok]
    eps = 8 / 255
    static, fooled_s = run_attack('pgd', v, x, y, eps=eps, alpha=2 / 255, steps=6)
    adv, rec = adaptive_attack(v, sc, x, y, eps=eps, steps=6, kind=kind, seed=0)
    assert (adv - x).abs().max() <= eps + 1e-6 and torch.equal(adv, to_8bit(adv))
    with torch.no_grad():
        assert torch.equal(rec['fooled'], v(adv).argmax(1) != y)
        s_static = sc.logit(static)
        assert torch.allclose(rec['score'].float(), sc.logit(adv).float(), atol=1e-4)
    assert rec['score'].mean() < s_static.mean() - 0.5, (rec['score'].mean(), s_static.mean())
    assert rec['evades'].float().mean() >= (fooled_s & sc.flagged(static).logical_not()).float().mean()
    assert torch.equal(rec['evades'], rec['fooled'] & ~rec['flagged'])


def test_report_functions(world, fitted, drsn):
    xs = world['xs']
    sets = {s: {'clean': xs[s], 'noise': world['noisy'][s]} for s in xs}
    tab, dets = classic_table(world['victim'], world['fx'], sets, detectors=['dfeat', 'kd_bu'], fitted={'drsn_tvl': drsn})
    assert list(tab.index) == ['drsn_tvl', 'dfeat', 'kd_bu'] and dets['drsn_tvl'] is drsn
    assert tab[('noise', 'auroc')].loc[['dfeat', 'kd_bu']].min() > 0.9
    df = adaptive_table(world['victim'], world['fx'], {'dfeat': dets['dfeat']}, xs['test'], world['ys']['test'],
                        eps_list=[8 / 255], kinds=('pgd',), steps=3, n_max=8)
    assert list(df.index.get_level_values('attack')) == ['static pgd', 'adaptive pgd']
    assert ((df[['attack_success', 'evades_both', 'clean_fpr']] >= 0) & (df[['attack_success', 'evades_both', 'clean_fpr']] <= 1)).all().all()
    assert (df.evades_both <= df.attack_success + 1e-9).all()


# ---------------------------------------------------------------- one configuration: BaselineConfig
def test_baseline_config_values_overrides_and_errors(monkeypatch):
    from drsn_tvl.baselines import BaselineConfig, baseline_config
    c = BaselineConfig.from_settings()
    assert (c.lid_k, c.lid_batch, c.bu_samples, c.rf_trees, c.adaptive_steps, c.seed, c.round_8bit) == (20, 100, 20, 100, 20, 42, True)
    assert np.allclose(c.adaptive_eps, [2 / 255, 4 / 255, 8 / 255]) and BaselineConfig.section == 'baselines'
    monkeypatch.setenv('DRSN_TVL_LID_K', '7')
    assert BaselineConfig.from_settings().lid_k == 7 and baseline_config(None, lid_k=3).lid_k == 3
    assert c.replace(rf_trees=None).rf_trees == 100
    with pytest.raises(KeyError, match='unknown key'): BaselineConfig.from_settings(trees=3)
    with pytest.raises(ValueError, match='rf_trees'): c.replace(rf_trees=0)
    with pytest.raises(ValueError, match='squeeze_bits'): c.replace(squeeze_bits=9)
    with pytest.raises(ValueError, match='adaptive_eps'): c.replace(adaptive_eps=(0.5, 2))
    with pytest.raises(ValueError, match='bu_samples'): c.replace(bu_samples='many')


def test_baseline_config_is_passed_down(world, monkeypatch):
    "A given config reaches the detector classes and the attacker; with both configs given nothing reads the settings."
    import drsn_tvl.core
    from drsn_tvl.baselines import BaselineConfig
    from drsn_tvl.model import DetectorConfig
    bc = BaselineConfig.from_settings().replace(rf_trees=7, lid_k=3, lid_batch=10, seed=5, eps=4 / 255, adaptive_steps=3)
    dc = DetectorConfig.from_settings().replace(target_fpr=0.2)
    monkeypatch.setattr(drsn_tvl.core, 'get_settings', lambda *a, **k: (_ for _ in ()).throw(AssertionError('settings read')))
    f = world['feat']
    det = fit_detector('dfeat', f['train'], f['valid'], cfg=dc, baseline_cfg=bc)
    assert det.kwargs['trees'] == 7 and det.seed == 5 and det.target_fpr == 0.2
    lid = create_detector('lid', (3, 40, 40), ['clean', 'adv'], cfg=dc, baseline_cfg=bc, k=4)
    assert (lid.kwargs['k'], lid.kwargs['batch']) == (4, 10)                  # keyword over the config over the settings
    monkeypatch.undo()
    a, _ = fit(world, 'lid')
    sc = DetectionPipeline(a, clahe=False, img_size=40)
    xs, ys = world['xs']['test'][:4], world['ys']['test'][:4]
    r1 = adaptive_attack(world['victim'], sc, xs, ys, cfg=bc)[0]
    r2 = adaptive_attack(world['victim'], sc, xs, ys, eps=4 / 255, steps=3, seed=5)[0]
    assert torch.equal(r1, r2)


# ---------------------------------------------------------------- logreg: the simplest baseline (issue 14)
def toy_maps(n, shift, seed, random_labels=False):
    "n clean + n shifted 8×3×3 maps (channel 0 moved by `shift`); with random_labels the labels carry no information."
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n, 8, 3, 3, generator=g); y = (torch.arange(2 * n) >= n).long()
    x[y == 1, 0] += shift
    if random_labels: y = (torch.randperm(2 * n, generator=g) % 2).long()
    return x, y


def test_logreg_beats_chance_only_when_there_is_signal():
    "Separable toy set: AUROC near 1; random labels: AUROC ~0.5 on fresh data (no leak, no memorised noise)."
    from sklearn.metrics import roc_auc_score
    det = fit_detector('logreg', toy_maps(100, 2., 0), toy_maps(50, 2., 1), seed=0)
    x, y = toy_maps(200, 2., 2)
    assert roc_auc_score(y, det.p_adversarial(x)) > 0.95
    m = evaluate(det, (x, y))
    assert m['accuracy'] > 0.85 and m['fpr'] < 0.15                         # the valid threshold transfers
    rnd = fit_detector('logreg', toy_maps(100, 0., 3, True), toy_maps(50, 0., 4, True), seed=0)
    xr, yr = toy_maps(300, 0., 5, True)
    assert abs(roc_auc_score(yr, rnd.p_adversarial(xr)) - 0.5) < 0.08


def test_logreg_save_load_seed_and_gradient(tmp_path):
    det = fit_detector('logreg', toy_maps(60, 1., 0), toy_maps(30, 1., 1), seed=3)
    x, _ = toy_maps(20, 1., 2)
    back = load_detector(save_detector(det, tmp_path / 'lr.pt'))
    assert back.name == 'logreg' and back.threshold == det.threshold and back.kwargs['seed'] == 3
    assert np.allclose(back.predict_proba(x), det.predict_proba(x), atol=1e-12) and (back.detect(x) == det.detect(x)).all()
    again = fit_detector('logreg', toy_maps(60, 1., 0), toy_maps(30, 1., 1), seed=3)
    assert np.array_equal(again.predict_proba(x), det.predict_proba(x))                    # same settings, same numbers
    xg = x[:4].clone().requires_grad_(True)
    det.logit(xg).sum().backward()
    assert xg.grad.abs().sum() > 0                                                           # differentiable for the adaptive attacker
    assert 'logreg' in BASELINES and not takes_images('logreg')
    with pytest.raises(FeatureError, match='binary detector'):
        create_detector('logreg', (8, 3, 3), ['clean', 'fgsm', 'pgd'])


# ---------------------------------------------------------------- the robust twin
def test_twin_resists_the_victims_pgd_and_flags_it(world):
    "The twin is not the victim: PGD examples crafted against the victim leave the PGD-trained twin at the clean label far more often, and the twin's score flags them above the clean rate."
    from drsn_tvl.baselines import baseline_config
    from drsn_tvl.victim import predict
    victim, xs, ys = world['victim'], world['xs'], world['ys']
    cfg = baseline_config(eps=4 / 255, twin_epochs=5, twin_steps=3, robust_lr=1e-3)
    adv = {s: run_attack('pgd', victim, xs[s], ys[s], eps=4 / 255, alpha=1 / 255, steps=10)[0] for s in ('train', 'valid', 'test')}
    sets = {s: make_detection_set(xs[s], adv[s], ['pgd'] * len(xs[s])) for s in adv}
    # data='rows': the 80 clean rows of this detection set (the default, the victim's 210-image train split, is tested in 08)
    det = fit_detector('twin', sets['train'], sets['valid'], victim=victim, seed=0, baseline_cfg=cfg, eps=4 / 255, data='rows')
    ok = predict(victim, xs['test']).argmax(1) == ys['test']
    keep_v, keep_t = ((predict(m, adv['test'][ok]).argmax(1) == ys['test'][ok]).float().mean() for m in (victim, det.twin))
    assert keep_t > keep_v + 0.3, (float(keep_t), float(keep_v))
    m = evaluate(det, sets['test'])
    assert m['auroc'] > 0.65 and m['fpr'] <= 0.2, m


def test_srm_twin_flags_what_either_member_flags_and_reuses_fitted_members(world):
    "classic_table fits srm and twin, then srm_twin from those very members: the union flags a row iff a member flags it at its own threshold, and its one threshold keeps the valid clean FPR at 5 %."
    from drsn_tvl.baselines import baseline_config
    xs, victim = world['xs'], world['victim']
    cfg = baseline_config(twin_epochs=1, twin_steps=1, twin_max_train=40, eps=8 / 255)
    adv = {s: run_attack('fgsm', victim, xs[s], world['ys'][s], eps=8 / 255)[0] for s in xs}
    sets = {s: {'clean': xs[s], 'fgsm': adv[s]} for s in xs}
    tab, dets = classic_table(victim, world['fx'], sets, detectors=['srm', 'twin', 'srm_twin'], cfg=cfg)
    u = dets['srm_twin']
    assert u.members['srm'] is dets['srm'] and u.members['twin'] is dets['twin']           # fitted once, reused
    x = torch.cat([xs['test'], adv['test']])
    either = torch.from_numpy(dets['srm'].detect(x) | dets['twin'].detect(x))
    assert torch.equal(u.logit(x) > 0, either)
    pv = u.p_adversarial(xs['valid'])
    assert (pv > u.threshold).mean() <= 0.05 + 1e-9
    assert tab.loc['srm_twin', ('all', 'auroc')] >= min(tab.loc['srm', ('all', 'auroc')], tab.loc['twin', ('all', 'auroc')]) - 0.05
