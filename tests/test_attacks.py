"Victim training and caching, the attack registry (every entry, cross-checks, bad input) and the adversarial-set builder."
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchattacks
from torch import nn

import drsn_tvl.attacks as A
import drsn_tvl.victim as V
from drsn_tvl.attacks import ATTACKS, TwoLogits, autoattack_components, build_adversarial_set, build_adversarial_sets, check_logits, get_attack, list_attacks, perturbation_norms, register_attack, run_attack
from drsn_tvl.core import AttackError, to_8bit
from drsn_tvl.victim import load_victim, train_victim
from drsn_tvl.data import get_dataset
from drsn_tvl.core import get_settings
from drsn_tvl.cli import main
from drsn_tvl.clahe import CLAHE

PAPER = {'fgsm', 'pgd', 'noise', 'noise_visible'}
STRONG = {'cw', 'deepfool', 'autoattack', 'boundary'}
REF = {'fgsm_ref', 'pgd_ref'}
BUDGETED = {'fgsm', 'fgsm_ref', 'pgd', 'pgd_ref', 'autoattack'}
TINY = dict(pgd=dict(steps=3), pgd_ref=dict(steps=3), cw=dict(steps=5, l2_budget=100.), deepfool=dict(steps=5, l2_budget=100.),
            autoattack=dict(steps=2, n_queries=10), boundary=dict(steps=20, l2_budget=100.))   # budget: test_boundary_*

class Tiny(nn.Module):
    "A small random conv net (logits for `c` classes) on 16×16 images."
    def __init__(self, c=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, c))
    def forward(self, x): return self.net(x)


def batch(c=3, n=6, seed=1):
    m = Tiny(c).eval()
    x = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    x = to_8bit(x)
    with torch.no_grad(): y = m(x).argmax(1)          # labels = predictions: every image starts correctly classified
    return m, x, y

# ---------------------------------------------------------------- registry and every entry
def test_registry_has_the_suite():
    assert PAPER | STRONG | REF <= set(list_attacks())
    t = A.attack_table()
    assert {'name', 'norm', 'kind', 'source', 'params'} <= set(t.columns)
    assert t.set_index('name').loc['boundary', 'source'] == 'foolbox'
    assert 'eps=0.007843' in t.set_index('name').loc['pgd', 'params']       # default from settings: 2/255

def test_unknown_attack_lists_valid_ones():
    m, x, y = batch()
    with pytest.raises(KeyError) as e: run_attack('pgdd', m, x, y)
    assert 'pgdd' in str(e.value) and all(n in str(e.value) for n in ('fgsm', 'pgd', 'boundary'))

@pytest.mark.parametrize('name', sorted(PAPER | STRONG | REF))
def test_every_attack_end_to_end(name):
    m, x, y = batch(c=4 if name == 'autoattack' else 3)
    adv, ok = ATTACKS[name](m, x, y, **TINY.get(name, {}))
    assert adv.shape == x.shape and adv.dtype == x.dtype and ok.dtype == torch.bool and ok.shape == (len(x),)
    assert 0 <= adv.min() and adv.max() <= 1
    assert torch.equal(adv, to_8bit(adv))                                       # on the 8-bit grid
    with torch.no_grad(): assert torch.equal(ok, m(adv).argmax(1) != y)         # success after rounding
    linf, l2 = perturbation_norms(x, adv)
    if name in BUDGETED: assert linf.max() <= get_settings().eps + 1e-6
    assert m.training is False

@pytest.mark.parametrize('name', sorted(PAPER | STRONG | REF))
def test_grey_images_stay_grey(name):
    m, x, _ = batch(c=4 if name == 'autoattack' else 3, n=5)
    x = x[:, :1].expand(-1, 3, -1, -1).contiguous()                             # grey images stored as RGB
    with torch.no_grad(): y = m(x).argmax(1)
    adv, ok = run_attack(name, m, x, y, **TINY.get(name, {}))
    assert A.is_grey(adv)
    with torch.no_grad(): assert torch.equal(ok, m(adv).argmax(1) != y)
    if name in BUDGETED: assert perturbation_norms(x, adv)[0].max() <= get_settings().eps + 1e-6

def test_keep_grey_off_and_colour_images():
    m, x, _ = batch(n=5)
    g = x[:, :1].expand(-1, 3, -1, -1).contiguous()
    with torch.no_grad(): y = m(g).argmax(1)
    assert A.is_grey(run_attack('fgsm', m, g, y, eps=0.05)[0])
    assert not A.is_grey(run_attack('fgsm', m, g, y, eps=0.05, keep_grey=False)[0])   # the random net's channels differ
    assert not A.is_grey(run_attack('fgsm', m, x, y, eps=0.05)[0])                      # colour images are not touched

def test_attacks_are_strong_enough_and_noise_is_not():
    m, x, y = batch(c=3, n=16)
    ok_pgd = run_attack('pgd', m, x, y, eps=16 / 255, alpha=4 / 255, steps=10)[1]
    ok_noise = run_attack('noise', m, x, y, std=1 / 255)[1]
    assert ok_pgd.float().mean() > 0.5 and ok_pgd.float().mean() > ok_noise.float().mean()

def test_seeded_and_rng_untouched():
    m, x, y = batch()
    for name in ('noise', 'pgd', 'noise_visible'):
        a1, _ = run_attack(name, m, x, y, seed=5, round_8bit=False)
        state = torch.get_rng_state()
        a2, _ = run_attack(name, m, x, y, seed=5, round_8bit=False)
        assert torch.equal(torch.get_rng_state(), state)                        # the caller's RNG is not consumed
        a3, _ = run_attack(name, m, x, y, seed=6, round_8bit=False)
        assert torch.equal(a1, a2) and not torch.equal(a1, a3)

def test_noise_restarts_keep_fooling_draws():
    m, x, y = batch(n=16)
    a1, one = run_attack('noise', m, x, y, std=0.2, restarts=1, seed=0, round_8bit=False)
    a8, many = run_attack('noise', m, x, y, std=0.2, restarts=8, seed=0, round_8bit=False)
    assert many[one].all() and torch.equal(a8[one], a1[one])      # a first draw that fooled is the one kept
    later = many & ~one                                            # fooled only by a later draw: not the first one kept
    assert many.sum() > 0 and (a8[later] != a1[later]).flatten(1).any(1).all()

def test_attacks_leave_the_model_untouched():
    "Eval mode survives (torchattacks restores the mode of the module it was given) and BatchNorm statistics are not updated."
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = to_8bit(torch.rand(4, 1, 12, 12)).expand(-1, 3, -1, -1).contiguous()
    with torch.no_grad(): y = m(x).argmax(1)
    for name in ('fgsm', 'pgd', 'cw', 'noise'): run_attack(name, m, x, y, **TINY.get(name, {}))
    assert not m.training and all(torch.equal(before[k], v) for k, v in m.state_dict().items())

def test_model_mode_restored():
    m, x, y = batch(); m.train()
    run_attack('fgsm', m, x, y)
    assert m.training

@pytest.mark.parametrize('name', ['cw', 'deepfool'])
def test_minimal_l2_attacks_held_to_their_budget(name):
    "CW and DeepFool stop only at the boundary: like Boundary, an example beyond the L2 budget is not adversarial for the run."
    m, x, y = batch(c=3)
    adv, ok = run_attack(name, m, x, y, steps=5, l2_budget=100.)
    assert ok.any()
    l2 = perturbation_norms(x, adv)[1]
    k = int(l2[ok].argmin()); budget = float(l2[ok][k]) * (1 + 1e-4)    # a budget just at the smallest successful L2
    adv2, ok2 = run_attack(name, m, x, y, steps=5, l2_budget=budget)
    assert torch.equal(adv2, adv)                                      # the same examples, fewer of them count
    assert ok2.sum() >= 1 and torch.equal(ok2, ok & (l2 <= budget * (1 + 1e-6)))
    assert ATTACKS[name].defaults()['l2_budget'] == get_settings().l2_budget


def test_boundary_starts_from_another_class_when_noise_fails():
    "foolbox refuses a batch whose blended-noise start fails; the entry falls back to an image of another class."
    class Bright(nn.Module):
        def __init__(self): super().__init__(); self.w = nn.Parameter(torch.tensor(1.))
        def forward(self, x): m = x.mean((1, 2, 3)) * self.w - 0.6; return torch.stack([-m, m], 1) * 10
    m = Bright().eval()
    x = torch.cat([torch.full((2, 3, 8, 8), 0.2), torch.full((2, 3, 8, 8), 0.9)]); y = torch.tensor([0, 0, 1, 1])
    adv, ok = run_attack('boundary', m, x, y, steps=30, l2_budget=100.)  # uniform noise (mean 0.5) is class 0: no noise start for 0s
    assert ok.all()
    l2 = perturbation_norms(x, adv)[1]
    assert (l2 < perturbation_norms(x, x.flip(0))[1]).all()       # it walked from the other image towards the clean one
    # held to its budget: the default, eps·sqrt(C·H·W) at eps 2/255, is far below these L2 distances, so nothing counts
    adv2, ok2 = run_attack('boundary', m, x, y, steps=30)
    assert torch.equal(adv2, adv) and not ok2.any() and (l2 > 2 / 255 * 192 ** 0.5).all()
    k = int(l2.argmin())                                           # a budget just above one example's L2 admits that one only
    _, ok3 = run_attack('boundary', m, x, y, steps=30, l2_budget=float(l2[k]))
    assert ok3[k] and ok3.sum() == (l2 <= l2[k] * (1 + 1e-6)).sum()
    adv, ok = run_attack('boundary', m, x[:2], y[:2], steps=30, l2_budget=100.)   # no other class in the batch: reported as failed
    assert not ok.any() and torch.equal(adv, x[:2])

# ---------------------------------------------------------------- cross-checks with torchattacks
def test_fgsm_ref_equals_torchattacks():
    m, x, y = batch(n=8)
    ta = torchattacks.FGSM(m, eps=3 / 255)(x, y)
    ref = run_attack('fgsm_ref', m, x, y, eps=3 / 255, round_8bit=False)[0]
    torch.testing.assert_close(ref, ta, atol=1e-6, rtol=0)

def test_pgd_ref_equals_torchattacks_without_random_start():
    m, x, y = batch(n=8)
    ta = torchattacks.PGD(m, eps=4 / 255, alpha=1 / 255, steps=7, random_start=False)(x, y)
    ref = run_attack('pgd_ref', m, x, y, eps=4 / 255, alpha=1 / 255, steps=7, random_start=False, round_8bit=False)[0]
    torch.testing.assert_close(ref, ta, atol=1e-6, rtol=0)

def test_pgd_ref_equals_torchattacks_with_seeded_random_start():
    m, x, y = batch(n=8)
    torch.manual_seed(11)                                   # torchattacks draws its start from the global RNG
    ta = torchattacks.PGD(m, eps=4 / 255, alpha=1 / 255, steps=5, random_start=True)(x, y)
    ref = run_attack('pgd_ref', m, x, y, eps=4 / 255, alpha=1 / 255, steps=5, seed=11, round_8bit=False)[0]
    torch.testing.assert_close(ref, ta, atol=1e-6, rtol=0)
    via = run_attack('pgd', m, x, y, eps=4 / 255, alpha=1 / 255, steps=5, seed=11, round_8bit=False)[0]
    torch.testing.assert_close(via, ta, atol=1e-6, rtol=0)   # the registry's pgd seeds the same way
    other = run_attack('pgd_ref', m, x, y, eps=4 / 255, alpha=1 / 255, steps=5, seed=12, round_8bit=False)[0]
    assert (other - ta).abs().max() > 1e-4                   # a different start gives a different result

def test_autoattack_components_for_binary_tasks():
    m = Tiny(2)
    names = [type(a).__name__ for a in autoattack_components(m, 2 / 255, n_classes=2, steps=3, n_queries=7)]
    assert names == ['APGD', 'FAB', 'Square']                # APGD-T's DLR loss needs 4 logits
    comps = autoattack_components(m, 2 / 255, n_classes=4, steps=3, n_queries=7)
    assert [type(a).__name__ for a in comps] == ['APGD', 'APGDT', 'FAB', 'Square']
    assert comps[0].steps == 3 and comps[-1].n_queries == 7
    m2, x, y = batch(c=2)
    adv, ok = run_attack('autoattack', m2, x, y, steps=2, n_queries=10)       # torchattacks alone crashes on 2 classes
    assert adv.shape == x.shape
    with pytest.raises(ValueError, match='version'): autoattack_components(m, 0.1, version='fast')

# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize('kw,msg', [(dict(eps=1.5), 'eps=1.5'), (dict(eps=-0.01), 'outside'), (dict(alpha=3.0), 'alpha=3.0'),
                                    (dict(steps=-1), 'steps=-1'), (dict(epsilon=0.1), "'eps'")])
def test_bad_params(kw, msg):
    m, x, y = batch()
    with pytest.raises((AttackError, TypeError), match=msg.replace('(', r'\(')): run_attack('pgd', m, x, y, **kw)

def test_bad_images_labels_models():
    m, x, y = batch()
    with pytest.raises(AttackError, match=r'\[0, 1\]'): run_attack('fgsm', m, x * 255, y)
    with pytest.raises(AttackError, match=r'\[0, 1\]'): run_attack('fgsm', m, x - 0.5, y)
    with pytest.raises(AttackError, match='uint8'): run_attack('fgsm', m, (x * 255).byte(), y)
    with pytest.raises(AttackError, match='labels'): run_attack('fgsm', m, x, y[:2])
    with pytest.raises(AttackError, match='0..2'): run_attack('fgsm', m, x, y + 3)
    single = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 1))
    with pytest.raises(AttackError, match='TwoLogits'): run_attack('fgsm', single, x, y.clamp(max=1))
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 1), nn.Flatten(0))            # (N,) output
    with pytest.raises(AttackError, match='single-logit'): run_attack('pgd', flat, x, y.clamp(max=1))
    with pytest.raises(AttackError, match=r'\(N, classes\)'): run_attack('fgsm', nn.Identity(), x, y)
    adv, ok = run_attack('fgsm', TwoLogits(single), x, y.clamp(max=1), eps=0.1)              # the fix works
    assert adv.shape == x.shape

def test_two_logits_same_probabilities():
    single = nn.Sequential(nn.Flatten(), nn.Linear(12, 1)); x = torch.rand(5, 3, 2, 2)
    torch.testing.assert_close(TwoLogits(single)(x).softmax(1)[:, 1], torch.sigmoid(single(x)[:, 0]))
    assert check_logits(TwoLogits(single), x) == 2

def test_rounding_rechecks_success():
    "An attack that crosses the boundary only off the 8-bit grid is not a success once rounded."
    class Thresh(nn.Module):
        def __init__(self): super().__init__(); self.t = nn.Parameter(torch.tensor(0.5))
        def forward(self, x): s = x.mean((1, 2, 3)) - self.t; return torch.stack([-s, s], 1)
    @register_attack('_nudge', 'Linf', 'test', 'tests')
    def _nudge(model, images, labels, eps=0.4 / 255): return images + eps
    try:
        x = torch.full((2, 3, 4, 4), 127 / 255); y = torch.zeros(2, dtype=torch.long)    # mean 0.498 < 0.5: class 0
        m = Thresh(); m.t.data = x.mean() + 0.2 / 255
        adv, ok = run_attack('_nudge', m, x, y, round_8bit=False)
        assert ok.all()
        adv, ok = run_attack('_nudge', m, x, y, round_8bit=True)
        assert not ok.any() and torch.equal(adv, x)
        register_attack('_nudge', 'L2', 'test', 'tests', minimal=True, overwrite=True)(_nudge)   # a minimal attack ...
        adv, ok = run_attack('_nudge', m, x, y)                                                  # ... is fitted to the grid
        assert ok.all() and torch.equal(adv, torch.full_like(x, 128 / 255))                      # δ × 1.25 = 0.5/255 → 128
        adv, ok = run_attack('_nudge', m, x, y, fit_8bit=False)
        assert not ok.any()
    finally:
        ATTACKS.pop('_nudge')

# ---------------------------------------------------------------- one configuration
def test_attack_config_is_built_once_and_passed_down(monkeypatch):
    s = get_settings()
    cfg = A.AttackConfig.from_settings()
    assert (cfg.eps, cfg.pgd_steps, cfg.attacks, cfg.attack_chunk_size) == (s.eps, s.pgd_steps, tuple(s.attacks), s.attack_chunk_size)
    assert get_attack('pgd').resolve(cfg) == dict(eps=s.eps, alpha=s.pgd_alpha, steps=s.pgd_steps, random_start=s.pgd_random_start)
    m, x, y = batch()
    via_cfg = run_attack('fgsm', m, x, y, cfg=cfg.replace(eps=0.05, round_8bit=False))
    via_kw = run_attack('fgsm', m, x, y, eps=0.05, round_8bit=False)
    assert torch.equal(via_cfg[0], via_kw[0]) and torch.equal(via_cfg[1], via_kw[1])
    assert torch.equal(run_attack('fgsm', m, x, y, cfg=cfg.replace(round_8bit=False), round_8bit=True)[0],
                       run_attack('fgsm', m, x, y)[0])                                 # keywords win over cfg
    assert 'eps=0.03137' in A.attack_table(cfg.replace(eps=8 / 255)).set_index('name').loc['fgsm', 'params']
    with pytest.raises(ValueError, match='attack_batch_size'): A.AttackConfig.from_settings(attack_batch_size=0)
    with pytest.raises(ValueError, match=r'\[attack\] pgd_steps'): A.AttackConfig.from_settings(pgd_steps='many')
    with pytest.raises(KeyError, match='epsilon'): A.AttackConfig.from_settings(epsilon=0.1)
    # below the entry point nothing reads the settings: a broken reader is never called once cfg is given
    import drsn_tvl.core as core
    monkeypatch.setattr(core, 'get_settings', lambda *a, **k: pytest.fail('settings read below an entry point'))
    monkeypatch.setattr(A.AttackConfig, 'from_settings', classmethod(lambda *a, **k: pytest.fail('config built twice')))
    assert torch.equal(run_attack('fgsm', m, x, y, cfg=cfg.replace(eps=0.05, round_8bit=False))[0], via_kw[0])

# ---------------------------------------------------------------- registering from another module
def test_register_attack_from_outside():
    def shift(model, images, labels, amount=0.1, seed=0):
        "Shift every pixel by `amount`."
        return (images + amount).clamp(0, 1)
    shift.__module__ = 'some_other_module'
    try:
        register_attack('_shift', norm='none', kind='test', source='some_other_module', settings={'amount': 'noise_std'})(shift)
        assert '_shift' in list_attacks() and get_attack('_shift').defaults() == {'amount': get_settings().noise_std}
        assert get_attack('_shift').defaults(A.AttackConfig.from_settings(noise_std=0.3)) == {'amount': 0.3}   # from a passed config
        m, x, y = batch()
        adv, ok = ATTACKS['_shift'](m, x, y, amount=0.2)
        assert torch.allclose(adv, to_8bit((x + 0.2).clamp(0, 1)))
        register_attack('_shift', norm='none')(shift)                         # same function again (a reload): fine
        def other(model, images, labels): return images
        with pytest.raises(ValueError, match='already registered'): register_attack('_shift')(other)
        register_attack('_shift', overwrite=True)(other)
        assert get_attack('_shift').fn is other
        with pytest.raises(TypeError, match='model, images, labels'): register_attack('_bad')(lambda x, y: x)
        with pytest.raises(TypeError, match='settings'): register_attack('_bad2', settings={'nope': 'eps'})(other)
        with pytest.raises(TypeError, match='AttackConfig'): register_attack('_bad3', settings={'amount': 'gen_kappa'})(shift)
        assert '_bad3' not in ATTACKS
    finally:
        ATTACKS.pop('_shift', None)

def test_attacks_command_lists_registry(capsys):
    main(['attacks'])
    out = capsys.readouterr().out
    assert all(n in out for n in PAPER | STRONG | REF) and 'torchattacks' in out and 'foolbox' in out

def test_victim_and_adversarial_commands(capsys):
    assert main(['victim', '--backbone', 'test_efficientnet', '--img-size', '32', '--epochs', '1']) in (0, None)
    out = capsys.readouterr().out
    out = json.loads(out[out.index('\n{') + 1:])                                   # after the progress bars
    assert set(out['test']) >= {'accuracy', 'precision', 'sensitivity', 'f1'}
    assert out['n']['test'] == len(get_dataset('synthetic', 'test', img_size=32))      # the whole test split was scored
    t = out['test']
    assert abs(t['accuracy'] * out['n']['test'] - round(t['accuracy'] * out['n']['test'])) < 1e-6   # a count of images
    assert abs(t['f1'] - (2 * t['precision'] * t['sensitivity'] / (t['precision'] + t['sensitivity'] or 1))) < 1e-6
    assert main(['adversarial', '--backbone', 'test_efficientnet', '--img-size', '32', '--epochs', '1',
                 '--attacks', 'fgsm,noise', '--n-max', '12']) in (0, None)
    out = capsys.readouterr().out
    assert 'success_rate' in out and 'fgsm' in out and 'noise' in out
    assert main(['adversarial', '--attacks', 'fgsm,nope']) == 2
    assert 'nope' in capsys.readouterr().err

# ---------------------------------------------------------------- victim
SMALL = dict(dataset='synthetic', backbone='test_efficientnet', pretrained=False, img_size=32, epochs=1, lr=3e-3,
             batch_size=16, n=48, progress=False)

@pytest.fixture(scope='module')
def victim_dir(tmp_path_factory): return tmp_path_factory.mktemp('victim-cache')

@pytest.fixture(scope='module')
def victim(victim_dir): return train_victim(cache_dir=victim_dir, **SMALL)

def test_victim_trains_caches_and_reports(victim, victim_dir):
    meta = victim.meta
    assert set(meta['test']) == {'accuracy', 'precision', 'sensitivity', 'f1', 'n'}
    # the reported test metrics are the model's own on the test split, recomputed here independently
    te = get_dataset('synthetic', 'test', img_size=32, tfms=CLAHE(), n=48)
    x = torch.stack([te[i][0] for i in range(len(te))]); y = torch.as_tensor(te.labels)
    with torch.no_grad(): pred = victim(x).argmax(1)
    t = meta['test']
    assert meta['n']['test'] == t['n'] == len(te) and abs(t['accuracy'] - (pred == y).float().mean().item()) < 1e-6
    tp = ((pred == 1) & (y == 1)).sum().item()
    assert abs(t['sensitivity'] - tp / max((y == 1).sum().item(), 1)) < 1e-6 and abs(t['precision'] - tp / max((pred == 1).sum().item(), 1)) < 1e-6
    assert sum(meta['n'].values()) == 48 and meta['n'] == {s: len(get_dataset('synthetic', s, img_size=32, n=48)) for s in ('train', 'valid', 'test')}
    assert meta['config']['clahe'] == repr(CLAHE()) and meta['classes'] == ['normal', 'opacity']
    files = sorted(p.name for p in (victim_dir / 'victims').iterdir())
    k = meta['key']                                                             # entry, checksum records, lock; no temporary leftovers
    assert files == [f"{k}.json", f"{k}.json.sha256", f"{k}.pt", f"{k}.pt.lock", f"{k}.pt.sha256"], files
    sd = torch.load(victim_dir / 'victims' / f"{meta['key']}.pt", weights_only=True)
    assert set(sd) == set(victim.state_dict())
    again = train_victim(cache_dir=victim_dir, **SMALL)
    assert again.meta == json.loads(json.dumps(meta))
    for k, v in victim.state_dict().items(): assert torch.equal(again.state_dict()[k], v)
    # normalisation inside the model: the buffers hold the backbone's mean/std
    assert victim.mean.shape == (1, 3, 1, 1) and torch.allclose(victim.mean.flatten(), torch.tensor(victim.backbone.pretrained_cfg['mean']))

def test_victim_seeded_and_keyed(victim, victim_dir, tmp_path):
    other = train_victim(cache_dir=tmp_path, **SMALL)                          # a fresh cache: retrained, same seed
    for k, v in victim.state_dict().items(): assert torch.allclose(other.state_dict()[k], v, atol=1e-5), k
    changed = train_victim(cache_dir=victim_dir, **{**SMALL, 'lr': 1e-3})
    assert changed.meta['key'] != victim.meta['key']

def test_victim_from_a_config_is_the_same_victim(victim, victim_dir):
    cfg = V.VictimConfig.from_settings(dataset='synthetic', victim_backbone='test_efficientnet', victim_pretrained=False, img_size=32,
                                       victim_epochs=1, victim_lr=3e-3, victim_batch_size=16, ds_kwargs=dict(n=48), cache_dir=str(victim_dir))
    same = train_victim(cfg=cfg, progress=False)                                    # read from the cache: same key, same record
    assert same.meta['key'] == victim.meta['key'] and same.meta['config'] == victim.meta['config']
    assert V.VictimConfig.from_settings(**{'victim_preset': 'paper'}).replace(img_size=32).record()['img_size'] == 32

def test_victim_max_train_is_a_keyed_seeded_subset(victim, victim_dir):
    n_tr = victim.meta['n']['train']
    sub = train_victim(cache_dir=victim_dir, max_train=n_tr - 5, **SMALL)
    assert sub.meta['n']['train'] == n_tr - 5 and sub.meta['config']['max_train'] == n_tr - 5
    assert sub.meta['key'] != victim.meta['key'] and sub.meta['n']['test'] == victim.meta['n']['test']
    same = train_victim(cache_dir=victim_dir, max_train=n_tr + 100, **SMALL)     # a cap above the split size changes nothing
    assert same.meta['key'] == victim.meta['key']
    with pytest.raises(ValueError, match='max_train'): train_victim(cache_dir=victim_dir, max_train=1, **SMALL)

def test_victim_config_errors_and_presets():
    cfg = V.VictimConfig.from_settings(victim_preset='paper').record()
    assert cfg['backbone'] == 'efficientnet_b7' and cfg['img_size'] == 224 and cfg['preset'] == 'paper'
    rec = V.VictimConfig.from_settings().record()
    assert rec['backbone'] == get_settings().victim_backbone == 'tf_efficientnet_lite0'
    assert rec['preset'] is None                       # the detector's `preset` setting is not the victim's recipe
    with pytest.raises(KeyError, match='paper'): V.VictimConfig.from_settings(victim_preset='gpu')
    with pytest.raises(ValueError, match='clahe_stage'): V.VictimConfig.from_settings(clahe_stage='during')
    with pytest.raises(ValueError, match='victim_epochs'): train_victim(epochs=0, progress=False)
    with pytest.raises(KeyError, match='paper'): train_victim(preset='gpu', progress=False)
    with pytest.raises(FileNotFoundError): load_victim('/nonexistent/victim.pt')

# ---------------------------------------------------------------- adversarial sets
KW = dict(attacks=['fgsm', 'pgd', 'noise_visible'], params=dict(pgd=dict(steps=3)), chunk_size=3, batch_size=2, progress=False)

def test_build_set_end_to_end_and_resume(victim, tmp_path, monkeypatch):
    s = build_adversarial_set(victim, 'train', cache_dir=tmp_path, **KW)
    ds = get_dataset('synthetic', 'train', img_size=32, tfms=CLAHE(), n=48)
    assert s.n_split == len(ds)
    with torch.no_grad(): right = victim(torch.stack([ds[i][0] for i in range(len(ds))])).argmax(1).numpy() == ds.labels
    assert np.array_equal(s.index, np.flatnonzero(right))                    # exactly the correctly classified images
    x = torch.stack([ds[i][0] for i in s.index]); y = torch.as_tensor(ds.labels[s.index])
    assert torch.equal(s.clean, A._to_u8(x)) and np.array_equal(s.labels, ds.labels[s.index])
    with torch.no_grad(): assert torch.equal(victim(x).argmax(1), y)           # only correctly classified images
    st = s.stats.set_index('attack')
    assert list(st.index) == KW['attacks']
    assert {'success_rate', 'linf_mean', 'linf_max', 'l2_mean', 'l2_max', 'sec_per_image', 'clean_accuracy'} <= set(st.columns)
    for a in KW['attacks']:
        assert st.loc[a, 'attacked'] == len(s.index) and st.loc[a, 'successful'] == s.success[a].sum()
        assert len(s.images(a)) == s.success[a].sum() == st.loc[a, 'kept']      # only successful by default
        with torch.no_grad(): assert torch.equal(victim(s.images(a, kept=False)).argmax(1) != y, s.success[a])
    assert st.loc['fgsm', 'linf_max'] <= get_settings().eps + 1e-6 or np.isnan(st.loc['fgsm', 'linf_max'])
    assert not list(Path(s.path).rglob('.*tmp*'))
    # resume: delete one chunk; only that chunk is attacked again, with identical results
    calls = []
    real = A.run_attack
    monkeypatch.setattr(A, 'run_attack', lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    cached = build_adversarial_set(victim, 'train', cache_dir=tmp_path, **KW)
    assert calls == []
    chunk = sorted(Path(st.loc['pgd', 'path']).glob('chunk_*.pt'))[0]; chunk.unlink()
    resumed = build_adversarial_set(victim, 'train', cache_dir=tmp_path, **KW)
    assert calls == ['pgd', 'pgd'] and chunk.is_file()                          # one chunk = 3 images = 2 batches
    for a in KW['attacks']: assert torch.equal(resumed.adv[a], s.adv[a]) and torch.equal(cached.success[a], s.success[a])
    every = build_adversarial_set(victim, 'train', cache_dir=tmp_path, only_successful=False, **KW)
    assert calls == ['pgd', 'pgd'] and len(every.images('fgsm')) == len(s.index)
    # the same set from a config instead of keywords: same cache keys, read from the cache
    cfg = A.AttackConfig.from_settings(attack_chunk_size=3, attack_batch_size=2, cache_dir=str(tmp_path), attacks=KW['attacks'])
    via_cfg = build_adversarial_set(victim, 'train', cfg=cfg, params=KW['params'], progress=False)
    assert calls == ['pgd', 'pgd'] and via_cfg.path == s.path and list(via_cfg.stats['path']) == list(st['path'])

def test_sets_never_mix_splits(victim, tmp_path):
    sets = build_adversarial_sets(victim, cache_dir=tmp_path, **{**KW, 'attacks': ['fgsm'], 'params': {}})
    items = {sp: set(get_dataset('synthetic', sp, n=48).index['item'].iloc[s.index]) for sp, s in sets.items()}
    assert not (items['train'] & items['valid'] or items['train'] & items['test'] or items['valid'] & items['test'])
    assert len({s.path for s in sets.values()}) == 3 and all(s.split == sp for sp, s in sets.items())

def test_after_attack_stage(tmp_path, victim):
    with pytest.raises(ValueError, match='clahe_stage'):
        build_adversarial_set(victim, 'test', clahe_stage='after_attack', cache_dir=tmp_path, **KW)
    raw = train_victim(cache_dir=tmp_path, clahe_stage='after_attack', **SMALL)
    assert raw.meta['config']['clahe'] is None
    s = build_adversarial_set(raw, 'train', cache_dir=tmp_path, **{**KW, 'attacks': ['fgsm'], 'params': {}, 'chunk_size': 64, 'batch_size': 64})
    ds_raw = get_dataset('synthetic', 'train', img_size=32, n=48)
    x_raw = torch.stack([ds_raw[int(i)][0] for i in s.index])
    with torch.no_grad(): assert torch.equal(raw(x_raw).argmax(1), torch.as_tensor(s.labels))    # attacked: raw images it gets right
    clahed = torch.stack([torch.from_numpy(CLAHE()(ds_raw.image(int(i)))).permute(2, 0, 1) for i in s.index])
    assert torch.equal(s.clean, clahed)                                         # the detector sees CLAHE(clean) ...
    adv_raw, ok = run_attack('fgsm', raw, x_raw, torch.as_tensor(s.labels), seed=get_settings().seed)
    assert torch.equal(s.adv['fgsm'], A._to_u8(A.clahe_tensor(adv_raw))) and torch.equal(s.success['fgsm'], ok)   # ... and CLAHE(adv)

def test_builder_bad_input(victim, tmp_path):
    with pytest.raises(KeyError, match='registered attacks'): build_adversarial_set(victim, 'test', attacks=['nope'], cache_dir=tmp_path)
    with pytest.raises(ValueError, match='split'): build_adversarial_set(victim, 'dev', cache_dir=tmp_path)
    with pytest.raises(KeyError, match='not in attacks'):
        build_adversarial_set(victim, 'test', attacks=['fgsm'], params={'pgd': {}}, cache_dir=tmp_path)
    with pytest.raises(AttackError, match='eps'):
        build_adversarial_set(victim, 'test', attacks=['fgsm'], params={'fgsm': {'eps': 2}}, cache_dir=tmp_path)

@pytest.mark.slow
def test_lite0_victim_learns_synthetic(tmp_path):
    v = train_victim(dataset='synthetic', img_size=64, epochs=3, lr=3e-3, cache_dir=tmp_path, progress=False)
    assert v.source.startswith('package:') and v.meta['test']['accuracy'] > 0.85
