"Tests of the strong adaptive evaluation (08_baselines): intervals, the attack variants, the masking check, adversarially trained detectors, the robust-victim bound."
import numpy as np
import pandas as pd
import pytest
import timm
import torch
from torch import nn

from drsn_tvl.core import to_8bit
from drsn_tvl.features import FeatureExtractor
from drsn_tvl.model import DetectionPipeline, fit_detector, load_detector, make_detection_set, save_detector
from drsn_tvl import baselines as B

S = 24


class Tiny(nn.Module):
    "A small, input-sensitive CNN victim with a last linear layer (the classic detectors read its input)."
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Linear(128, 2)
    def forward(self, x): return self.head(self.f(x) * 10)


@pytest.fixture(scope='module')
def world():
    torch.manual_seed(0)
    v = Tiny().eval()
    fx = FeatureExtractor(timm.create_model('test_efficientnet', pretrained=False, num_classes=0))
    g = torch.Generator().manual_seed(0)
    xs = {s: to_8bit(torch.rand(n, 1, S, S, generator=g).expand(n, 3, S, S).contiguous()) for s, n in dict(train=40, valid=30, test=20).items()}
    noisy = {s: to_8bit((x + 0.15 * torch.randn(x.shape, generator=g)).clamp(0, 1)) for s, x in xs.items()}
    img = {s: make_detection_set(xs[s], noisy[s], ['noise'] * len(xs[s])) for s in xs}
    fm = lambda x: B._maps(fx, x, False, S)
    feat = {s: make_detection_set(fm(xs[s]), fm(noisy[s]), ['noise'] * len(xs[s])) for s in xs}
    lr = fit_detector('logreg', feat['train'], feat['valid'], seed=0)
    with torch.no_grad(): y = v(xs['test']).argmax(1)
    cfg = B.baseline_config(strong_steps=6, strong_restarts=2, adaptive_eps=(2 / 255, 8 / 255), at_rounds=1, at_steps=3,
                            robust_epochs=1, robust_steps=2)
    return dict(v=v, fx=fx, xs=xs, img=img, feat=feat, lr=lr, x=xs['test'], y=y, cfg=cfg)


def test_wilson_matches_scipy():
    from scipy.stats import binomtest
    for k, n in [(0, 7), (3, 10), (100, 200), (200, 200)]:
        ci = binomtest(k, n).proportion_ci(0.95, method='wilson')
        assert np.allclose(B.wilson(k, n), (ci.low, ci.high), atol=1e-9)
    assert all(np.isnan(B.wilson(0, 0)))


def test_config_checks_the_new_keys():
    with pytest.raises(ValueError, match='strong_variants'): B.baseline_config(strong_variants=('joint', 'bogus'))
    with pytest.raises(ValueError, match='strong_steps'): B.baseline_config(strong_steps=0)
    with pytest.raises(ValueError, match='masking_eps'): B.baseline_config(masking_eps=(2.,))
    with pytest.raises(ValueError, match='strong_max_step'): B.baseline_config(strong_max_step=-1 / 255)
    assert B.baseline_config().strong_max_step == pytest.approx(2 / 255)          # the settings' value, parsed from 2/255


@pytest.mark.parametrize('variant', B.ADAPTIVE_VARIANTS)
def test_strong_attack_stays_in_budget_on_the_8bit_grid(world, variant):
    x, y = world['x'], world['y']
    sc = DetectionPipeline(world['lr'], extractor=world['fx'], clahe=False, img_size=S)
    adv, rec = B.strong_adaptive_attack(world['v'], sc, x, y, eps=4 / 255, variant=variant, cfg=world['cfg'], eot=2 if variant == 'joint' else None)
    assert (adv - x).abs().max() <= 4 / 255 + 1e-6
    assert torch.equal(adv, to_8bit(adv))                                      # BPDA through the rounding: values are 8-bit
    assert (adv[:, 0] == adv[:, 1]).all()                                     # grey images stay grey
    assert len(rec['curve']) == world['cfg'].strong_steps + 1 and np.isfinite(rec['curve'].loss).all()
    assert torch.equal(rec['evades'], rec['fooled'] & ~rec['flagged'])
    with pytest.raises(ValueError, match='variant'): B.strong_adaptive_attack(world['v'], sc, x, y, variant='nope', cfg=world['cfg'])


def test_orthogonal_step_ignores_the_other_constraint():
    gv, gd = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    fooled, hd = torch.tensor([False, True, True]), torch.tensor([1., 1., 0.])
    d = B._step_direction('orthogonal', gv, gd, fooled, hd, 1.)
    assert abs(float((d[0] * gd[0]).sum())) < 1e-4 and abs(float((d[1] * gv[1]).sum())) < 1e-4
    assert torch.equal(d[2], torch.zeros_like(d[2]))                           # both constraints met: no step
    assert torch.equal(B._step_direction('selective', gv, gd, fooled, hd, 1.)[0], gv[0])


def test_no_gradient_masking_success_rises_with_eps(world):
    sc = DetectionPipeline(world['lr'], extractor=world['fx'], clahe=False, img_size=S)
    t = B.success_vs_eps(world['v'], sc, world['x'], world['y'], eps_list=[0.5 / 255, 128 / 255], cfg=world['cfg'])
    assert list(t.index) == [0.5, 128.0]
    assert t.attack_success.iloc[-1] >= 0.95 and t.evades_both.iloc[-1] >= 0.9
    assert t.attack_success.iloc[0] <= t.attack_success.iloc[-1]
    assert (t.attack_success_lo <= t.attack_success).all() and (t.attack_success <= t.attack_success_hi).all()
    assert t.step_255.iloc[-1] == pytest.approx(2.) and t.step_255.iloc[0] == pytest.approx(2.5 * 0.5 / world['cfg'].strong_steps, abs=1e-3)


def test_masking_check_attacks_only_correctly_classified_images(world):
    sc = DetectionPipeline(world['lr'], extractor=world['fx'], clahe=False, img_size=S)
    x, y = world['x'], world['y'].clone()
    y[:5] = 1 - y[:5]                                                           # five images the victim now gets wrong
    t = B.success_vs_eps(world['v'], sc, x, y, eps_list=[128 / 255], n_max=12, cfg=world['cfg'])
    assert t.n.iloc[0] == min(12, len(x) - 5)
    with pytest.raises(ValueError, match='none of the images'):
        B.success_vs_eps(world['v'], sc, x, 1 - world['y'], eps_list=[2 / 255], cfg=world['cfg'])


def test_a_flagged_adversarial_example_is_kept_over_a_failed_attack(world):
    "A scorer that flags every perturbed image: nothing can evade, and the attack must still report the victim fooled, as static PGD does."
    from drsn_tvl.attacks import run_attack
    x, y = world['x'], world['y']
    class FlagsAnyChange:
        def logit(self, v): return 1e5 * (v - x.to(v)).abs().flatten(1).mean(1) - 1      # the clean image scores -1 < 0
    _, rec = B.strong_adaptive_attack(world['v'], FlagsAnyChange(), x, y, eps=8 / 255, variant='selective', threshold=0.,
                                      cfg=world['cfg'], batch_size=len(x))
    _, fooled = run_attack('pgd', world['v'], x, y, eps=8 / 255, alpha=2.5 * 8 / 255 / 6, steps=6, seed=0)
    assert fooled.float().mean() >= 0.5 and not rec['evades'].any()
    assert rec['fooled'].float().mean() >= fooled.float().mean() - 0.1 and rec['flagged'][rec['fooled']].all()


def test_adversarial_training_checkpoints_resumes_and_is_seeded(world, tmp_path):
    img, v, fx = world['img'], world['v'], world['fx']
    kw = dict(victim=v, extractor=fx, seed=0, baseline_cfg=world['cfg'], ckpt_dir=tmp_path)
    a = fit_detector('logreg_at', img['train'], img['valid'], **kw)
    assert [r['resumed'] for r in a.log] == [False, False] and a.log[1]['n_train'] > a.log[0]['n_train']   # round 1 added examples
    assert len(list(tmp_path.glob('*round*.pt'))) == 4 and len(list(tmp_path.glob('*.sha256'))) >= 2
    b = fit_detector('logreg_at', img['train'], img['valid'], **kw)
    assert [r['resumed'] for r in b.log] == [True, True]
    c = fit_detector('logreg_at', img['train'], img['valid'], **{**kw, 'ckpt_dir': None})            # no checkpoints: same numbers
    p = a.p_adversarial(img['test'].x)
    assert np.array_equal(p, b.p_adversarial(img['test'].x)) and np.array_equal(p, c.p_adversarial(img['test'].x))
    assert a.threshold == b.threshold == c.threshold
    save_detector(a, tmp_path / 'a.pt')
    d = load_detector(tmp_path / 'a.pt')
    with pytest.raises(B.VictimMissing): d.p_adversarial(img['test'].x)
    d.attach(v).use_extractor(fx)
    assert np.allclose(d.p_adversarial(img['test'].x), p)


def test_image_base_and_classic_table_entry(world):
    img, v = world['img'], world['v']
    m = fit_detector('mahalanobis_at', img['train'], img['valid'], victim=v, seed=0, baseline_cfg=world['cfg'])
    assert m.base.name == 'mahalanobis' and m.base.victim is v
    with pytest.raises(KeyError, match='base'): B.AdvTrained((3, S, S), ['clean', 'adversarial'], base='logreg_at')
    sets = {s: {'clean': world['xs'][s], 'noise': img[s].x[img[s].y == 1]} for s in world['xs']}
    tab, fitted = B.classic_table(v, world['fx'], sets, detectors=['logreg_at'], seed=0, cfg=world['cfg'])
    assert isinstance(fitted['logreg_at'], B.AdvTrained) and fitted['logreg_at'].extractor is world['fx']
    assert 0 <= tab.loc['logreg_at', ('all', 'auroc')] <= 1


def test_robust_victim_callback_and_table(world):
    v, xs, cfg = world['v'], world['xs'], world['cfg']
    with torch.no_grad(): ytr, yva = v(xs['train']).argmax(1), v(xs['valid']).argmax(1)
    rv = B.train_robust_victim(v, xs['train'], ytr, valid=(xs['valid'], yva), cfg=cfg)
    assert rv is not v and rv.robust_eps == cfg.eps / 2 and not rv.training
    assert any((p1 != p2).any() for p1, p2 in zip(rv.parameters(), v.parameters()))     # it trained a copy; v unchanged
    ra = B.robust_accuracy(rv, world['x'], world['y'], 8 / 255, cfg=cfg)
    assert ra['robust_acc'] <= ra['clean_acc'] and ra['robust_acc_lo'] <= ra['robust_acc'] <= ra['robust_acc_hi']
    at = fit_detector('logreg_at', world['img']['train'], world['img']['valid'], victim=v, extractor=world['fx'], seed=0, baseline_cfg=cfg)
    fitted = {'logreg': world['lr'], 'logreg_at': at}
    t1, curves = B.beyond_adaptive_table(v, world['fx'], fitted, world['x'], world['y'], robust_victim=rv, cfg=cfg)
    t2, _ = B.beyond_adaptive_table(v, world['fx'], fitted, world['x'], world['y'], robust_victim=rv, cfg=cfg)
    pd.testing.assert_frame_equal(t1, t2)                                      # seeded: the same table on a rerun
    attacks = set(t1.loc['logreg'].index.get_level_values('attack'))
    assert attacks == {'static pgd', 'adaptive joint', 'adaptive selective', 'adaptive orthogonal', 'adaptive strongest'}
    assert B.ROBUST_ROW in t1.index.get_level_values('detector') and t1['exceeds_bound'].dropna().isin([True, False]).all()
    att = t1.drop(B.ROBUST_ROW, level='detector').index.get_level_values('attack')
    assert t1.drop(B.ROBUST_ROW, level='detector')['exceeds_bound'][att == 'static pgd'].isna().all()    # the bound is for adaptive rows
    assert t1.drop(B.ROBUST_ROW, level='detector')['exceeds_bound'][att != 'static pgd'].notna().all()
    s = t1.xs('adaptive strongest', level='attack').drop(B.ROBUST_ROW, errors='ignore')
    for v_ in B.ADAPTIVE_VARIANTS:                                               # the strongest is at least as strong as each
        assert (s.evades_both.values >= t1.xs(f'adaptive {v_}', level='attack').evades_both.values - 1e-12).all()
    assert len(curves) == 2 * 2 * 3
    fig = B.plot_beyond(t1, 'tiny'); assert len(fig.axes) == 2
