"""The production joint step's one-stage (OSGAN) update equals the ordinary two-pass GAN update.

`train.steps.joint_step` backpropagates ONE loss (Eq. 9 with the three GANs' critic losses, each fake
routed through `OneStageGAN.to_discriminator`). On the real tiny `CSVRModel` (pose CGAN with WGAN-GP,
drift term and visibility mask; both video GANs; the encoders upstream of the generators) this test
compares, parameter by parameter, the gradients `joint_step` hands to the optimizer with a two-pass
reference written here from the loss primitives:

- discriminators: d(total discriminator loss)/d(theta_D), generated samples detached;
- generators and encoders: d(total generator loss incl. L2 and context terms)/d(theta_G), critics fixed.

Three loss configurations: tiny.yaml's weights (where the reversal scale is exactly -1), non-default
weights (sigma_p != sigma_c, adv_weight != 1, a large drift term: a scale that ignored w_G / w_D would
fail here) and the predict-only video branch of Table V. A last test negates the reversal's scale in
`train.osgan` and asserts that the comparison then fails on exactly the generator-side groups.

Determinism: the generators' noise (`sample_noise`) and the gradient-penalty eps are fixed and shared
by both computations, and the test asserts that the production step draws nothing from the global RNG.
Precision: float64 end to end; `torch.Tensor.float` is patched to keep float64 tensors float64 (the
production code calls `.float()` before its losses, which would otherwise round parts of the graph to
float32; with float64 parameters it would not even run), so the two computations agree to ~1e-12
relative (measured worst: 5e-13, on the critics; entries that are zero in exact arithmetic, such as the
bias of a conv followed by batch norm, differ by ~1e-17). The elementwise tolerance, rtol = 1e-9 and
atol = 1e-12 x the largest reference entry, leaves a 1000x margin and no room for a wrong term: negating
the reversal moves the generator-side gradients by 4e-4 (V-Network) to 4e-2 (AdaIN) of their norm.
"""

from __future__ import annotations

import math

import pytest
import torch

from csvr.train import losses as L
from csvr.train import osgan
from csvr.train.config import PretrainConfig, load_config
from csvr.train.loop import autocast_context, first_non_finite
from csvr.train.steps import LossModule, StepContext, joint_step, video_target
from csvr.train.system import DISCRIMINATORS, CSVRModel, stage_groups

from train_testdata import FAST, TINY_PRETRAIN

torch.set_num_threads(1)

B, FRAMES, FUTURE, K = 4, 4, 2, 2
SIZE = 16  # crop = video_size: the clips reach the V-Network and the critics at 16 x 16
OVERRIDES = (*FAST, f"batch_size={B}", f"data.frames={FRAMES}", f"data.future_frames={FUTURE}",
             f"data.max_iframes={K}", f"data.crop={SIZE}", f"data.input_size={SIZE}", f"model.video_size={SIZE}",
             "model.options.frame_latent=8", "model.options.gen_min_channels=8")
RTOL, ATOL = 1e-9, 1e-12


class _CaptureGrads(torch.optim.Optimizer):
    """Stands in for the SGD optimizer: `step()` records every gradient and changes no weight."""

    def __init__(self, params):
        super().__init__(params, {})
        self.grads: dict[int, torch.Tensor | None] | None = None

    def step(self, closure=None):  # noqa: ARG002
        self.grads = {id(p): None if p.grad is None else p.grad.detach().clone()
                      for g in self.param_groups for p in g["params"]}


@pytest.fixture
def float64_float(monkeypatch):
    """`.float()` keeps float64 tensors float64 (other dtypes convert to float32 as usual)."""
    orig = torch.Tensor.float

    def keep64(self, *args, **kwargs):
        return self if self.dtype == torch.float64 else orig(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "float", keep64)


def _setup(monkeypatch, loss_overrides=()):
    cfg = load_config(PretrainConfig, TINY_PRETRAIN, [*OVERRIDES, *loss_overrides])
    assert cfg.model.context_loss == "mi_infonce"
    torch.manual_seed(0)
    net = CSVRModel(cfg.model, cfg.data.frames, cfg.data.future_frames).double()
    net.train()  # the joint stage trains every group (train.pretrain._build_stage)
    g = torch.Generator().manual_seed(1)
    dd = dict(dtype=torch.float64)
    mask = torch.rand(B, FUTURE, 17, generator=g) > 0.25
    batch = {
        "clip": torch.randn(B, 3, FRAMES, SIZE, SIZE, generator=g, **dd),
        "future_clip": torch.randn(B, 3, FUTURE, SIZE, SIZE, generator=g, **dd),
        "pose": torch.rand(B, FRAMES, 17, 3, generator=g, **dd),
        "future_pose": torch.rand(B, FUTURE, 17, 3, generator=g, **dd),
        "future_pose_mask": mask,
        "iframes": torch.randn(B, K, 3, SIZE, SIZE, generator=g, **dd),
        "iframe_mask": torch.tensor([[True, True], [True, False], [True, True], [False, True]]),
        "video_index": torch.tensor([0, 1, 2, 2]),  # two clips of one video: not each other's negatives
    }
    batch["clip_target"] = batch["clip"] * 0.9  # the un-jittered clips the generators must reproduce
    batch["future_clip_target"] = batch["future_clip"] * 0.9
    # fixed generator noise and gradient-penalty eps, shared by production and reference
    noise = {name: torch.randn(B, cfg.model.noise_dim, generator=g, **dd)
             for name in ("pose_gen", "video_gen_r", "video_gen_p")}
    for name, z in noise.items():
        def sample(batch_size, device=None, z=z):
            assert batch_size == B
            return z
        monkeypatch.setattr(getattr(net, name), "sample_noise", sample)
    eps = torch.rand(B, generator=g, **dd)
    orig_gp = L.gradient_penalty
    gp_calls = []

    def fixed_gp(critic, real, fake, e=None):
        assert e is None and real.shape[0] == B
        gp_calls.append(tuple(real.shape))
        return orig_gp(critic, real, fake, eps)

    monkeypatch.setattr(L, "gradient_penalty", fixed_gp)  # train.steps calls L.gradient_penalty
    return cfg, net, batch, noise, eps, orig_gp, gp_calls


def _production(cfg, net, batch):
    """`joint_step` as the trainer calls it (no grad clipping); the gradients reaching `optimizer.step()`."""
    groups = stage_groups("joint", cfg.loss.video_targets)

    def check(terms):
        bad = first_non_finite(terms)
        assert bad is None, bad

    ctx = StepContext(loss=cfg.loss, model=cfg.model, groups=groups, check=check,
                      autocast=lambda: autocast_context(torch.device("cpu"), cfg.run.amp), grad_clip=None)
    opt = _CaptureGrads([p for gname in groups for p in getattr(net, gname).parameters()])
    rng = torch.get_rng_state()
    scalars = joint_step(LossModule(net), batch, opt, ctx)
    assert torch.equal(torch.get_rng_state(), rng), "the joint step drew unpatched random numbers"
    assert opt.grads is not None and all(math.isfinite(v) for v in scalars.values())
    return groups, opt.grads


def _reference(cfg, net, batch, noise, eps, gp):
    """Two-pass update: critics on detached fakes; generators/encoders through fixed critics."""
    lc = cfg.loss
    groups = stage_groups("joint", lc.video_targets)
    disc_params = [p for g in groups if g in DISCRIMINATORS for p in getattr(net, g).parameters()]
    gen_params = [p for g in groups if g not in DISCRIMINATORS for p in getattr(net, g).parameters()]

    # pose CGAN (Eq. 1): D_p(P | P_in), unobserved joints blanked in real and generated futures alike
    p_in, p_gt, mask = batch["pose"][..., :2], batch["future_pose"][..., :2], batch["future_pose_mask"]
    pred, feats = net.pose_gen(p_in, noise["pose_gen"])
    keep = mask[..., None].to(pred.dtype)
    real_p, fake_p = p_gt * keep, pred * keep

    def crit_p(v):
        return net.pose_disc(v, p_in)

    d_pose = (L.d_adv_loss(crit_p(real_p), crit_p(fake_p.detach())) + lc.gp_weight * gp(crit_p, real_p, fake_p, eps)
              + lc.drift_weight * crit_p(real_p).pow(2).mean())
    g_pose = lc.adv_weight * L.g_adv_loss(crit_p(fake_p)) + lc.pose_l2_weight * L.pose_l2(pred, p_gt, mask)

    # context matching (Eq. 2)
    f_s = net.video_embedding(batch["clip"])
    z = net.iframe_embeddings(batch["iframes"], batch["iframe_mask"])
    l_ctx = L.mi_infonce(f_s, z, batch["iframe_mask"], net.cfg.temperature, video_ids=batch["video_index"])

    # video GANs (Eqs. 6-8) from f_i = AdaIN(f_s, f_d)
    f_i = net.integrate(f_s, net.motion_feature(feats))
    d_video, g_video = [], []
    specs = {"reconstruct": ("video_gen_r", "video_disc_r", "clip"), "predict": ("video_gen_p", "video_disc_p", "future_clip")}
    for t in lc.video_targets:
        gname, dname, key = specs[t]
        disc = getattr(net, dname)
        target = video_target(batch[f"{key}_target"], net.cfg.video_size)
        fake = getattr(net, gname)(f_i, noise[gname])
        d_video.append(L.d_adv_loss(disc(target), disc(fake.detach())) + lc.gp_weight * gp(disc, target, fake, eps)
                       + lc.drift_weight * disc(target).pow(2).mean())
        g_video.append(lc.adv_weight * L.g_adv_loss(disc(fake)) + lc.video_l2_weight * L.video_l2(fake, target))

    d_total = lc.sigma_p * d_pose + sum(d_video) / len(d_video)
    g_total = lc.sigma_p * g_pose + lc.sigma_c * l_ctx + sum(g_video) / len(g_video)
    d_grads = torch.autograd.grad(d_total, disc_params, retain_graph=True)
    g_grads = torch.autograd.grad(g_total, gen_params)  # critics fixed: only theta_G is differentiated
    ref = {id(p): gr for p, gr in zip(disc_params, d_grads)}
    ref.update({id(p): gr for p, gr in zip(gen_params, g_grads)})
    return ref


def _mismatches(net, groups, got, ref) -> dict[str, list[str]]:
    """Per group, the parameters whose production gradient is not allclose to the reference's
    (rtol=RTOL elementwise; atol=ATOL x the largest reference entry, for entries that are zero in exact
    arithmetic, e.g. the bias of a conv followed by batch norm)."""
    atol = ATOL * max(r.abs().max().item() for r in ref.values())
    bad: dict[str, list[str]] = {}
    for gname in groups:
        for n, p in getattr(net, gname).named_parameters():
            if not torch.allclose(got[id(p)], ref[id(p)], rtol=RTOL, atol=atol):
                bad.setdefault(gname, []).append(n)
    return bad


LOSS_CASES = {
    "tiny": (),  # configs/pretrain/tiny.yaml's weights (Eq. 9 with sigma_p = sigma_c = 0.75)
    "reweighted": ("loss.sigma_p=0.6", "loss.sigma_c=1.3", "loss.adv_weight=0.4", "loss.drift_weight=0.2",
                   "loss.gp_weight=3.0", "loss.pose_l2_weight=2.0", "loss.video_l2_weight=0.5"),
    "predict_only": ("loss.video_targets=[predict]", "loss.adv_weight=1.7"),  # Table V: one video GAN
}


@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_joint_step_gradients_equal_two_pass(monkeypatch, float64_float, case):
    cfg, net, batch, noise, eps, gp, gp_calls = _setup(monkeypatch, LOSS_CASES[case])
    groups, got = _production(cfg, net, batch)
    n_gans = 1 + len(cfg.loss.video_targets)
    assert len(gp_calls) == n_gans  # one gradient penalty per GAN, all with the fixed eps
    ref = _reference(cfg, net, batch, noise, eps, gp)
    trained = [p for gname in groups for p in getattr(net, gname).parameters()]
    assert trained and all(p.requires_grad for p in trained)
    if len(cfg.loss.video_targets) == 2:  # Eq. 9 with both video targets trains every parameter
        assert {id(p) for p in trained} == {id(p) for p in net.parameters()}
    for gname in groups:  # every parameter the joint stage trains received a (finite) gradient
        module = getattr(net, gname)
        for n, p in module.named_parameters():
            assert got[id(p)] is not None, f"{gname}.{n} got no gradient"
            assert torch.isfinite(got[id(p)]).all(), f"{gname}.{n}"
        assert any(got[id(p)].abs().sum() > 0 for p in module.parameters()), f"{gname}: all-zero gradient"
    assert _mismatches(net, groups, got, ref) == {}


def test_flipped_reversal_sign_is_detected(monkeypatch, float64_float):
    """With the gradient reversal's scale negated, the comparison must fail exactly where it should:
    every group downstream of a generator output differs; the critics and the context-only I-Network
    side do not."""
    cfg, net, batch, noise, eps, gp, _ = _setup(monkeypatch)
    ref = _reference(cfg, net, batch, noise, eps, gp)
    orig = osgan.OneStageGAN.scale_for
    monkeypatch.setattr(osgan.OneStageGAN, "scale_for", lambda self, y: -orig(self, y))
    groups, got = _production(cfg, net, batch)
    bad = _mismatches(net, groups, got, ref)
    assert set(bad) == {"vnet", "head_v", "pose_gen", "motion_align", "integration", "video_gen_r", "video_gen_p"}
