"The perturbation generators: budget, training, resuming after a kill, checkpoints, the attack registry, bad input."
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from drsn_tvl.data import get_splits
from drsn_tvl.core import seed_everything, get_settings
from drsn_tvl.wgan import NOISES, GeneratorNotFound, check_trained, critic_report, round_to_8bit, augment, AdvGAN, ARCHS, GAN_VARIANTS, GANConfig, PerturbationGenerator, Critic, as_tensors, to_float, train_generator, find_generator, gan_config, read_checkpoint, _TRAINED, margin_loss
from drsn_tvl.core import GANError, model_fingerprint
from drsn_tvl.attacks import register_generator
from drsn_tvl.attacks import run_attack, list_attacks

class TinyCNN(nn.Module):
    def __init__(self, c=2, w=16):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, w, 3, 2, 1), nn.ReLU(), nn.Conv2d(w, 2 * w, 3, 2, 1), nn.ReLU(),
                                 nn.Conv2d(2 * w, 2 * w, 3, 1, 1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(2 * w, c))
    def forward(self, x): return self.net((x - 0.5) / 0.25)

SMALL = dict(eps=8/255, width=4, n_res=1, batch_size=32, augment=False,    # 4 epochs: learning, not regularisation
             inputs='image', param='sign', kappa=0, gan_weight=1)          # plain AdvGAN: the generator alone must learn the attack
GRAD = dict(SMALL, inputs='image+grad', param='tanh', kappa=10, gan_weight=0.1, universal=True)   # the gradient-informed options
WIDTH = {'wgan': 4, 'gan': 4, 'dcgan': 8}          # the DCGAN encoder-decoder has no skips: it needs more channels


@pytest.fixture(scope='module')
def setup():
    sp = get_splits('synthetic', img_size=32)
    (xtr, ytr), (xva, yva) = as_tensors((np.stack([sp['train'].raw(i) for i in range(len(sp['train']))]), sp['train'].labels)), \
                             as_tensors((np.stack([sp['valid'].raw(i) for i in range(len(sp['valid']))]), sp['valid'].labels))
    seed_everything(0); v = TinyCNN(); opt = torch.optim.Adam(v.parameters(), lr=3e-3); x = to_float(xtr)
    for _ in range(30):
        for idx in torch.randperm(len(x)).split(32):
            loss = F.cross_entropy(v(x[idx]), ytr[idx]); opt.zero_grad(); loss.backward(); opt.step()
    v.eval()
    with torch.no_grad(): assert (v(to_float(xva)).argmax(1) == yva).float().mean() > 0.8
    return v, (xtr, ytr), (xva, yva)

@pytest.fixture(autouse=True)
def _clear_memory():
    _TRAINED.clear(); yield; _TRAINED.clear()

def _same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        if torch.is_tensor(a[k]): assert torch.equal(a[k], b[k]), k
        elif isinstance(a[k], dict): _same_state(a[k], b[k])
        elif isinstance(a[k], list) and a[k] and isinstance(a[k][0], dict):
            for x, y in zip(a[k], b[k]): _same_state(x, y)
        else: assert a[k] == b[k], k

@pytest.mark.parametrize('arch,size', [('advgan', 32), ('advgan', 48), ('dcgan', 32), ('dcgan', 64)])
@pytest.mark.parametrize('eps', [1/255, 8/255])
def test_perturbation_never_leaves_the_budget(arch, size, eps):
    torch.manual_seed(0)
    G = PerturbationGenerator(ARCHS[arch].generator(4, 1), eps, size)
    with torch.no_grad():                                   # blow the raw output up: tanh must still bound it
        for p in G.parameters(): p.mul_(50)
    x = torch.rand(4, 3, size, size); x[0] = 0; x[1] = 1
    d, xa = G(x), G.attack(x)
    assert d.abs().max() <= eps * (1 + 1e-6) and d.abs().max() > 0.9 * eps
    assert xa.min() >= 0 and xa.max() <= 1 and (xa - x).abs().max() <= eps * (1 + 1e-6)

def test_variants_are_data():
    assert {'wgan', 'gan', 'dcgan'} <= set(GAN_VARIANTS)
    s = get_settings()
    w, g, d = gan_config('wgan'), gan_config('gan'), gan_config('dcgan')
    assert (w['loss'], g['loss'], d['loss']) == ('wgan_gp', 'bce', 'bce') and (w['arch'], g['arch'], d['arch']) == ('advgan', 'advgan', 'dcgan')
    assert w['n_critic'] == s.wgan_n_critic and g['n_critic'] == s.gan_n_critic and w['betas'] == list(s.wgan_betas)
    assert w['gp_weight'] == s.wgan_gp_weight and g['gp_weight'] == 0
    def has_bn(m): return any(isinstance(l, nn.BatchNorm2d) for l in m.modules())
    gw, gd = AdvGAN(nn.Linear(1, 1).eval(), 32, 'wgan'), AdvGAN(nn.Linear(1, 1).eval(), 32, 'dcgan')
    assert not has_bn(gw.D) and not has_bn(gw.G) and has_bn(gd.D) and has_bn(gd.G)   # GP critic: no batch norm

def test_settings_reach_the_config(monkeypatch):
    monkeypatch.setenv('DRSN_TVL_WGAN_N_CRITIC', '3'); monkeypatch.setenv('DRSN_TVL_GEN_TV_WEIGHT', '0.5')
    c = gan_config('wgan')
    assert c.n_critic == 3 and c.tv_weight == 0.5 and c.gen_tv_weight == 0.5 and c['n_critic'] == 3
    assert gan_config('wgan', n_critic=2).n_critic == 2

def _legacy_config(variant, **overrides):
    "The flat dict the untyped `gan_config` built (its code, kept here): checkpoints and cache keys hold this form."
    s = get_settings(); v = GAN_VARIANTS[variant]
    shared = dict(eps='eps', epochs='gen_epochs', batch_size='gen_batch_size', width='gen_width', n_res='gen_res_blocks',
                  adv_weight='gen_adv_weight', gan_weight='gen_gan_weight', tv_weight='gen_tv_weight', kappa='gen_kappa',
                  seed='seed', round_8bit='round_8bit', augment='gen_augment')
    cfg = dict(variant=variant, arch=v.arch, loss=v.loss, **{k: s[key] for k, key in shared.items()},
               **{k: s[f'{v.recipe}_{k}'] for k in ('n_critic', 'lr_g', 'lr_d', 'betas')},
               gp_weight=s.wgan_gp_weight if v.loss == 'wgan_gp' else 0., grey=None, param=s.gen_param,
               inputs=s.gen_input, universal=s.gen_universal, grad_step=s.gen_grad_step)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    cfg['eps'] = float(cfg['eps']); cfg['betas'] = [float(b) for b in cfg['betas']]
    for k in ('epochs', 'batch_size', 'width', 'n_res', 'n_critic', 'seed'): cfg[k] = int(cfg[k])
    for k in ('lr_g', 'lr_d', 'adv_weight', 'gan_weight', 'tv_weight', 'kappa', 'gp_weight', 'grad_step'): cfg[k] = float(cfg[k])
    return cfg

@pytest.mark.parametrize('variant', ['wgan', 'gan', 'dcgan'])
@pytest.mark.parametrize('ov', [{}, dict(SMALL, n_critic=2, grey=True, betas=(0.1, 0.2))])
def test_checkpoint_form_is_the_untyped_config(variant, ov):
    "`GANConfig.asdict()` is the old flat dict, same keys, order, values and types: old checkpoints load, cache keys stay."
    new, old = gan_config(variant, **ov).asdict(), _legacy_config(variant, **ov)
    assert list(new) == list(old) and json.dumps(new) == json.dumps(old)
    assert [type(v) for v in new.values()] == [type(v) for v in old.values()]

def test_typed_config_is_built_once_and_passed_down(setup, tmp_path, monkeypatch):
    "With a `GANConfig` given, training, checkpointing and the lookup never read the settings again."
    victim, tr, va = setup
    cfg = gan_config('gan', cache_dir=str(tmp_path), img_size=32, epochs=1, **SMALL)
    assert isinstance(cfg, GANConfig) and (cfg.gen_width, cfg.width, cfg.gen_augment) == (4, 4, False)
    import drsn_tvl.core, drsn_tvl.wgan
    def no(*a, **k): raise AssertionError('settings read below the entry point')
    monkeypatch.setattr(drsn_tvl.wgan, 'get_settings', no); monkeypatch.setattr(drsn_tvl.core, 'get_settings', no)
    g = train_generator(victim, tr, va, cfg=cfg, progress=False)
    assert g.cfg == cfg.replace(grey=True) and g.folder.parent == tmp_path / 'generators'
    _TRAINED.clear()
    f = find_generator(victim, cfg=cfg)
    assert f is not g and torch.equal(f.perturb(va[0][:4]), g.perturb(va[0][:4])) and f.cfg == g.cfg
    with pytest.raises(ValueError, match='from_settings'): AdvGAN(victim, 32, 'wgan', cfg=cfg)    # another recipe: a new config
    monkeypatch.undo()
    assert train_generator(victim, tr, va, 'gan', epochs=1, cache_dir=tmp_path, progress=False, **SMALL).folder == g.folder

@pytest.mark.parametrize('variant', ['wgan', 'gan', 'dcgan'])
def test_training_makes_an_attack(setup, variant):
    victim, tr, va = setup
    before = {k: v.clone() for k, v in victim.state_dict().items()}
    flags = [p.requires_grad for p in victim.parameters()]
    kw = dict(SMALL, width=WIDTH[variant])
    untrained = AdvGAN(victim, 32, variant, **kw).evaluate(va)['success']
    gan = AdvGAN(victim, 32, variant, **kw).fit(tr, va, epochs=4, progress=False)
    h = gan.history
    assert [r['epoch'] for r in h] == [1, 2, 3, 4] and gan.step == 4 * 7            # 210 images / 32 → 7 batches
    for k in ('critic_gap', 'd_loss', 'g_loss', 'g_adv', 'g_gan', 'success', 'clean_acc', 'linf', 'l2'):
        assert all(np.isfinite(r[k]) for r in h), k
    assert h[-1]['success'] > untrained + 0.1                                          # it learned to attack
    assert h[-1]['g_adv'] < h[0]['g_adv']
    assert all(r['linf'] <= 8/255 + 1e-6 for r in h)
    assert_not_collapsed(gan, va[0])
    # critic steps per generator step: Adam's step counter of the critic
    d_steps = int(next(iter(gan.opt_d.state.values()))['step'])
    assert d_steps == gan.cfg.n_critic * gan.step
    # the victim is untouched
    assert all(torch.equal(before[k], v) for k, v in victim.state_dict().items())
    assert [p.requires_grad for p in victim.parameters()] == flags

def assert_not_collapsed(gan, x):
    "The saved (8-bit rounded) perturbation is not zero, and the generator's δ is not constant: not within one image, not across images."
    d = (gan.attack(x) - to_float(x)).flatten(1)                  # what is saved: rounded, clipped
    assert (d != 0).float().mean() > 0.2, f"{gan.variant}: δ rounds to zero on {(d == 0).float().mean():.0%} of the pixels"
    d = gan.perturb(x).flatten(1)                                 # what the generator makes (before clipping to [0, 1])
    assert d.std(1).min() > 0, f"{gan.variant}: some image gets a constant δ"
    assert (d - d[:1]).abs().amax(1)[1:].max() > 0, f"{gan.variant}: every image gets the same δ"

def test_collapse_check_fails_on_zero_and_constant_delta(setup):
    "The check above is not vacuous: a generator whose δ is zero, or one constant value, fails it."
    victim, tr, va = setup
    for fill in (0., 1.):
        gan = AdvGAN(victim, 32, 'wgan', **SMALL)
        with torch.no_grad():
            last = gan.G.body[-1]; last.weight.zero_(); last.bias.fill_(fill)
        with pytest.raises(AssertionError): assert_not_collapsed(gan, va[0])

@pytest.mark.parametrize('variant', ['wgan', 'gan', 'dcgan'])
def test_small_budget_survives_rounding(setup, variant):
    "At eps = 2/255 (two grey levels) the generator, trained through the rounding, delivers a δ that survives it and fools."
    victim, tr, va = setup
    kw = dict(SMALL, eps=2/255, width=WIDTH[variant])
    gan = AdvGAN(victim, 32, variant, **kw).fit(tr, None, epochs=3, progress=False)
    assert_not_collapsed(gan, va[0])
    d = gan.attack(va[0]) - to_float(va[0])
    assert torch.allclose(d * 255, (d * 255).round(), atol=1e-4) and d.abs().max() <= 2/255 + 1e-6   # on the grid, in budget
    assert gan.evaluate(va)['success'] > AdvGAN(victim, 32, variant, **kw).evaluate(va)['success']

@pytest.mark.parametrize('base', [SMALL, GRAD], ids=['image', 'image+grad+universal'])
def test_two_epochs_equal_one_plus_resumed_one(setup, tmp_path, base):
    "Train 2 epochs, or 1 epoch, save, load in a new object and train 1 more: identical weights, optimiser states, history."
    victim, tr, va = setup
    kw = dict(base, n_critic=2, augment=True)
    ref = AdvGAN(victim, 32, 'wgan', **kw).fit(tr, va, epochs=2, progress=False)
    AdvGAN(victim, 32, 'wgan', **kw).fit(tr, va, epochs=1, ckpt_dir=tmp_path, progress=False)
    res = AdvGAN.load(tmp_path, victim)
    assert res.epoch == 1
    res.fit(tr, va, epochs=2, ckpt_dir=tmp_path, progress=False)
    _same_state(res.G.state_dict(), ref.G.state_dict()); _same_state(res.D.state_dict(), ref.D.state_dict())
    _same_state(res.opt_g.state_dict(), ref.opt_g.state_dict()); _same_state(res.opt_d.state_dict(), ref.opt_d.state_dict())
    assert [{k: v for k, v in r.items() if k != 'time'} for r in res.history] == [{k: v for k, v in r.items() if k != 'time'} for r in ref.history]

def test_critic_report_in_meta(setup, tmp_path):
    "The end-of-training critic estimates (generator vs noise at the same L∞) are computed on held-out images and stored."
    victim, tr, va = setup
    g = train_generator(victim, tr, va, 'wgan', epochs=2, cache_dir=tmp_path, progress=False, **SMALL)
    rep = g.meta['critic']
    assert rep['estimate'] == 'wasserstein' and rep['n_images'] == len(va[1]) and rep['epoch'] == 2
    assert all(np.isfinite(rep[k]) for k in ('generator', *NOISES))
    assert json.loads((g.folder / 'meta.json').read_text())['critic'] == rep
    assert read_checkpoint(g.folder)['meta']['critic'] == rep
    _TRAINED.clear()
    assert find_generator(victim, 'wgan', eps=8/255, img_size=32, cache_dir=tmp_path).meta['critic'] == rep   # survives loading
    assert critic_report(g, va[0], seed=g.cfg.seed) == rep                                    # seeded
    b = train_generator(victim, tr, va, 'gan', epochs=1, cache_dir=tmp_path, progress=False, **SMALL)
    assert b.meta['critic']['estimate'] == 'logit_gap'
    with pytest.raises(GANError, match='at least 2'): critic_report(g, va[0][:1])

class Kill(Exception): pass

@pytest.mark.parametrize('variant,kill_at', [('wgan', 9), ('dcgan', 16)])
def test_resume_after_kill_matches_uninterrupted(setup, variant, kill_at, tmp_path):
    victim, tr, va = setup
    kw = dict(SMALL, n_critic=2)
    ref = train_generator(victim, tr, va, variant, epochs=3, cache=False, progress=False, **kw)
    def killer(g):
        if g.step == kill_at: raise Kill
    with pytest.raises(Kill): train_generator(victim, tr, va, variant, epochs=3, progress=False, on_step=killer, **kw)
    folder = next((Path(get_settings().cache_dir) / 'generators').glob(f'{variant}-*'))
    saved = read_checkpoint(folder)                                                   # weights_only=True load
    assert saved['epoch'] == kill_at // 7 and saved['step'] == 7 * (kill_at // 7)     # last finished epoch
    assert not list(folder.glob('.*tmp*'))                                            # atomic writes left no temp file
    _TRAINED.clear()
    res = train_generator(victim, tr, va, variant, epochs=3, progress=False, **kw)
    assert res.epoch == 3 and res.step == ref.step
    _same_state(res.G.state_dict(), ref.G.state_dict()); _same_state(res.D.state_dict(), ref.D.state_dict())
    _same_state(res.opt_g.state_dict(), ref.opt_g.state_dict())
    for a, b in zip(res.history, ref.history):
        assert {k: v for k, v in a.items() if k != 'time'} == {k: v for k, v in b.items() if k != 'time'}
    meta = json.loads((folder / 'meta.json').read_text())
    assert meta['done'] and meta['epoch'] == 3 and len(meta['history']) == 3
    # a finished run is loaded, not retrained
    again = train_generator(victim, tr, va, variant, epochs=3, progress=False, on_step=killer, **kw)
    assert again.step == ref.step

def test_registered_attacks(setup):
    victim, tr, va = setup
    assert {'wgan', 'gan', 'dcgan'} <= set(list_attacks())
    with pytest.raises(FileNotFoundError, match='train_generator'): run_attack('gan', victim, to_float(va[0]), va[1], eps=8/255)
    gan = train_generator(victim, tr, None, 'gan', epochs=1, progress=False, **SMALL)
    xa, ok = run_attack('gan', victim, to_float(va[0]), va[1], eps=8/255, keep_grey=False)
    xg, okg = gan.attack(va[0], va[1])
    assert torch.allclose(xa, xg, atol=1e-6) and torch.equal(ok, okg)
    with torch.no_grad(): assert torch.equal(ok, victim(xa).argmax(1) != va[1])
    _TRAINED.clear()                                                                   # found on disk too
    xa2, _ = run_attack('gan', victim, to_float(va[0]), va[1], eps=8/255, keep_grey=False)
    assert torch.allclose(xa2, xa, atol=1e-6)
    with pytest.raises(GeneratorNotFound, match=r'there are: \[.eps=8/255 img_size=32'):                 # other budget: names what exists
        run_attack('gan', victim, to_float(va[0]), va[1], eps=4/255)
    with pytest.raises(GANError, match='img_size=48'): find_generator(victim, 'gan', eps=8/255, img_size=48)  # other size
    other = TinyCNN().eval()
    with pytest.raises(GANError, match='other victims: 1'): find_generator(other, 'gan', eps=8/255, img_size=32)   # other victim
    with pytest.raises(GANError, match='untrained'): register_generator(AdvGAN(victim, 32, 'gan', **SMALL))   # epoch 0
    _TRAINED[(gan.victim_fp, 'gan', round(8/255, 10), 32)] = AdvGAN(victim, 32, 'gan', **SMALL)
    with pytest.raises(GANError, match='untrained'): run_attack('gan', victim, to_float(va[0]), va[1], eps=8/255, keep_grey=False)
    register_generator(gan)
    assert find_generator(victim, 'gan', eps=8/255, img_size=32) is gan

def test_checkpoint_refuses_another_victim(setup, tmp_path):
    victim, tr, va = setup
    gan = AdvGAN(victim, 32, 'wgan', **SMALL); gan.save(tmp_path)
    other = TinyCNN().eval()
    with pytest.raises(GANError, match='victim'): AdvGAN.load(tmp_path, other)
    assert AdvGAN.load(tmp_path, other, check_victim_fp=False).epoch == 0
    with pytest.raises(GANError, match='config'): AdvGAN(victim, 32, 'wgan', **dict(SMALL, width=8)).load_state_dict(read_checkpoint(tmp_path))

def test_bad_input(setup):
    victim, tr, va = setup
    for eps in (0, -2/255, 1.5, float('nan')):
        with pytest.raises(GANError, match=r'eps'): AdvGAN(victim, 32, 'wgan', eps=eps)
    assert AdvGAN(victim, 32, 'wgan', eps=1).eps == 1.0                          # (0, 1]: the whole range is a budget
    with pytest.raises(GANError, match='at least 2 images, got 0'):             # an empty training set
        train_generator(victim, (tr[0][:0], tr[1][:0]), None, 'wgan', progress=False, **SMALL)
    with pytest.raises(GANError, match='gen_param'): AdvGAN(victim, 32, 'wgan', param='relu')
    with pytest.raises(GANError, match='gen_input'): AdvGAN(victim, 32, 'wgan', inputs='grad')
    with pytest.raises(GANError, match='gen_grad_step'): AdvGAN(victim, 32, 'wgan', grad_step=0)
    with pytest.raises(ValueError, match='eps'): run_attack('wgan', victim, to_float(va[0]), va[1], eps=0)
    victim.train()
    try:
        with pytest.raises(GANError, match=r'victim.eval\(\)'): AdvGAN(victim, 32, 'wgan')
    finally: victim.eval()
    gan = AdvGAN(victim, 32, 'wgan', **SMALL)
    with pytest.raises(GANError, match='32×32'): gan.attack(torch.rand(2, 3, 64, 64))
    with pytest.raises(GANError, match='32×32'): gan.fit((torch.rand(4, 3, 48, 48), torch.tensor([0, 1, 0, 1])), progress=False)
    with pytest.raises(GANError, match='32×32'): gan.fit(tr, (torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 0, 1])), progress=False)
    with pytest.raises(GANError, match='multiple of 8'): AdvGAN(victim, 36, 'dcgan')
    with pytest.raises(GANError, match=r'\[0, 1\]'): gan.attack(torch.rand(2, 3, 32, 32) * 2)
    with pytest.raises(GANError, match='integer labels'): gan.fit((tr[0], tr[1].float()), progress=False)
    with pytest.raises(GANError, match='N×3×H×W'): gan.attack(torch.rand(2, 1, 32, 32))
    with pytest.raises(KeyError, match='biggan'): AdvGAN(victim, 32, 'biggan')
    with pytest.raises(KeyError, match='lr'): AdvGAN(victim, 32, 'wgan', lr=1)
    with pytest.raises(GANError, match='gen_batch_size'): AdvGAN(victim, 32, 'wgan', batch_size=1)
    victim.train()                                # a victim switched to train mode after training is refused too
    try:
        with pytest.raises(GANError, match=r'victim.eval\(\)'): gan.attack(va[0], va[1])
    finally: victim.eval()

def test_margin_loss_matches_definition():
    torch.manual_seed(0)
    z, y = torch.randn(50, 5), torch.randint(0, 5, (50,))
    ref = torch.stack([z[i, y[i]] - max(z[i, j] for j in range(5) if j != y[i]) for i in range(50)])
    assert torch.allclose(margin_loss(z, y, kappa=100, reduce=False), ref)
    assert torch.allclose(margin_loss(z, y, kappa=0.5, reduce=False), ref.clamp(min=-0.5))

def test_medical_dataset_input_and_no_training_on_lookup(monkeypatch):
    "A generator attack never trains: it names train_generator until one is trained on the victim's train split, then uses it."
    from drsn_tvl.victim import train_victim, victim_splits
    from drsn_tvl.attacks import get_attack
    monkeypatch.setenv('DRSN_TVL_GEN_EPOCHS', '1'); monkeypatch.setenv('DRSN_TVL_GEN_WIDTH', '4')
    monkeypatch.setenv('DRSN_TVL_GEN_RES_BLOCKS', '1')
    victim = train_victim(dataset='synthetic', img_size=32, epochs=1, progress=False)
    sp = victim_splits(victim.meta['config'])
    x, y = as_tensors(sp['test'])
    assert x.dtype == torch.uint8 and x.shape == (len(sp['test']), 3, 32, 32)
    gen_dir = Path(get_settings().cache_dir) / 'generators'
    with pytest.raises(FileNotFoundError, match='train_generator'): run_attack('dcgan', victim, to_float(x), y)
    with pytest.raises(FileNotFoundError, match='train_generator'): get_attack('dcgan').token(victim, 32, eps=get_settings().eps)
    assert not list(gen_dir.glob('dcgan-*'))                                      # computing a cache key trained nothing
    gan = train_generator(victim, sp['train'], sp['valid'], 'dcgan', progress=False)   # what the experiment's generator stage does
    xa, ok = run_attack('dcgan', victim, to_float(x), y)
    meta = json.loads(next(gen_dir.glob('dcgan-*/meta.json')).read_text())
    assert meta['done'] and meta['cfg']['width'] == 4 and meta['cfg']['eps'] == get_settings().eps and len(meta['history']) == 1
    assert meta['victim_fp'] == model_fingerprint(victim)
    assert (xa - to_float(x)).abs().max() <= get_settings().eps + 1e-6
    assert get_attack('dcgan').token(victim, 32, eps=get_settings().eps) == model_fingerprint(gan.G)

def test_initialisation_is_seeded_and_leaves_the_global_rng_alone():
    v = nn.Linear(1, 1).eval()
    torch.manual_seed(5); a = torch.rand(3)
    torch.manual_seed(5); g1 = AdvGAN(v, 32, 'wgan', width=4, n_res=1); b = torch.rand(3)
    assert torch.equal(a, b)
    g2, g3 = AdvGAN(v, 32, 'wgan', width=4, n_res=1), AdvGAN(v, 32, 'wgan', width=4, n_res=1, seed=1)
    w1, w2, w3 = (next(iter(g.G.body.parameters())) for g in (g1, g2, g3))
    assert torch.equal(w1, w2) and not torch.equal(w1, w3)

def test_grey_images_get_grey_perturbations(setup, monkeypatch):
    "On grey training images the generator is trained for, and delivers, a perturbation equal in the three channels."
    victim, tr, va = setup                                    # the synthetic phantoms are grey
    g = train_generator(victim, tr, None, 'gan', epochs=1, progress=False, **SMALL)
    assert g.cfg.grey is True and g.G.grey
    d = g.perturb(va[0])
    assert torch.equal(d[:, 0], d[:, 1]) and torch.equal(d[:, 1], d[:, 2]) and d.abs().max() > 0
    xa, ok = run_attack('gan', victim, to_float(va[0]), va[1], eps=8/255)      # keep_grey's projection changes nothing
    xg, okg = g.attack(va[0], va[1])
    assert torch.allclose(xa, xg, atol=1e-6) and torch.equal(ok, okg)
    colour = tr[0].clone(); colour[:, 0] //= 2
    gc = train_generator(victim, (colour, tr[1]), None, 'gan', epochs=1, progress=False, **SMALL)
    assert gc.cfg.grey is False and gc.folder != g.folder
    dc = gc.perturb(colour[:8])
    assert not torch.equal(dc[:, 0], dc[:, 1])
    monkeypatch.setenv('DRSN_TVL_KEEP_GREY', 'false')
    assert train_generator(victim, tr, None, 'gan', epochs=1, progress=False, **SMALL).cfg.grey is False

def test_augment_is_a_seeded_flip_and_shift():
    "`augment` keeps shape and pixel values, is reproducible from its generator, and moves at most H/16 pixels."
    x = torch.rand(6, 3, 32, 32)
    a1, a2 = (augment(x, torch.Generator().manual_seed(3)) for _ in range(2))
    assert a1.shape == x.shape and torch.equal(a1, a2)
    assert not torch.equal(a1, augment(x, torch.Generator().manual_seed(4)))
    c = x[..., 2:-2, 2:-2]                                   # shift ≤ 2 px: the centre stays inside the image
    for i in range(6):                                       # every output equals some flip/shift of its input
        ok = False
        for f in (x[i], x[i].flip(-1)):
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    ok |= torch.equal(a1[i, :, 2:-2, 2:-2], f[:, 2 + dy:30 + dy, 2 + dx:30 + dx])
        assert ok, i

def test_adversarial_cache_key_follows_the_generator(setup):
    "The registered attacks' cache token is the generator's weights: retraining it invalidates cached adversarial sets."
    from drsn_tvl.attacks import get_attack
    victim, tr, va = setup
    tok = get_attack('gan').token
    g1 = train_generator(victim, tr, None, 'gan', epochs=1, progress=False, **SMALL)
    t1 = tok(victim, 32, eps=8/255)
    g2 = train_generator(victim, tr, None, 'gan', epochs=2, progress=False, **SMALL)
    t2 = tok(victim, 32, eps=8/255)
    assert t1 == model_fingerprint(g1.G) and t2 == model_fingerprint(g2.G) and t1 != t2


def test_gradient_input_starts_at_fgsm_and_trains(setup):
    "`inputs='image+grad'`: before training δ = eps·sign∇ (FGSM, no labels) when the body is silent; trained, it attacks at least as well; images/s stay above PGD-10's."
    victim, tr, va = setup
    gan = AdvGAN(victim, 32, 'wgan', **dict(GRAD, param='sign', universal=False, grad_step=8/255, grey=True))   # grey images
    with torch.no_grad(): last = gan.G.body[-1]; last.weight.zero_(); last.bias.zero_()
    x = to_float(va[0]); xf, _ = run_attack('fgsm', victim, x, va[1], eps=8/255)
    with torch.no_grad(): ok = victim(x).argmax(1) == va[1]          # FGSM uses the label, the generator the prediction: same where right
    assert ok.sum() > 10 and torch.allclose(gan.attack(va[0])[ok], xf[ok], atol=1e-6)   # FGSM's image after rounding
    kw = dict(GRAD, width=4)
    untrained = AdvGAN(victim, 32, 'wgan', **kw).evaluate(va)['success']
    gan = AdvGAN(victim, 32, 'wgan', **kw).fit(tr, va, epochs=3, progress=False)
    assert gan.history[-1]['success'] >= untrained - 0.05 and gan.history[-1]['success'] > 0.5
    assert_not_collapsed(gan, va[0])
    assert all(r['linf'] <= 8/255 + 1e-6 for r in gan.history)
    assert 'u' in gan.G.state_dict() and 'grad_scale' in gan.G.state_dict() and not any(k.startswith('victim') for k in gan.G.state_dict())
