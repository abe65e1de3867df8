"""OSGAN: one backward pass gives the same parameter gradients as the ordinary two-pass update."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from csvr.train import losses as L
from csvr.train.models import PoseDiscriminator, PoseGenerator
from csvr.train.osgan import OneStageGAN

torch.set_num_threads(1)


def _toy(seed: int = 0, d_bias: float = 0.0):
    torch.manual_seed(seed)
    gen = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 6)).double()
    disc = nn.Sequential(nn.Linear(6, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1)).double()
    with torch.no_grad():
        disc[2].bias.fill_(d_bias)
    z = torch.randn(5, 4, dtype=torch.double)
    real = torch.randn(5, 6, dtype=torch.double)
    target = torch.randn(5, 6, dtype=torch.double)  # for a non-adversarial L2 term on G
    eps = torch.rand(5, dtype=torch.double)
    return gen, disc, z, real, target, eps


def _grads(params):
    return [None if p.grad is None else p.grad.clone() for p in params]


def _two_pass(gen, disc, z, real, target, eps, kind, w_d, w_g, gp_w):
    crit = lambda v: disc(v).squeeze(-1)  # noqa: E731
    for p in [*gen.parameters(), *disc.parameters()]:
        p.grad = None
    fake = gen(z)
    # discriminator pass on the detached fake
    loss_d = w_d * L.d_adv_loss(crit(real), crit(fake.detach()), kind) + gp_w * L.gradient_penalty(crit, real, fake, eps)
    d_grads = torch.autograd.grad(loss_d, list(disc.parameters()), allow_unused=True)
    # generator pass through the (not yet updated) discriminator
    loss_g = w_g * L.g_adv_loss(crit(fake), kind) + L.pose_l2(fake.view(5, 1, 3, 2), target.view(5, 1, 3, 2))
    g_grads = torch.autograd.grad(loss_g, list(gen.parameters()))
    return list(d_grads), list(g_grads)


def _one_pass(gen, disc, z, real, target, eps, kind, w_d, w_g, gp_w):
    crit = lambda v: disc(v).squeeze(-1)  # noqa: E731
    for p in [*gen.parameters(), *disc.parameters()]:
        p.grad = None
    os = OneStageGAN(kind, d_weight=w_d, g_weight=w_g)
    fake = gen(z)
    loss = os.discriminator_loss(crit(real), crit(os.to_discriminator(fake)))
    loss = loss + gp_w * L.gradient_penalty(crit, real, fake, eps)
    loss = loss + L.pose_l2(fake.view(5, 1, 3, 2), target.view(5, 1, 3, 2))
    loss.backward()  # ONE backward
    return _grads(disc.parameters()), _grads(gen.parameters())


@pytest.mark.parametrize(
    "kind,w_d,w_g,gp_w,d_bias",
    [
        ("wgan", 1.0, 1.0, 10.0, 0.0),
        ("wgan", 0.75, 0.75, 10.0, 0.0),  # sigma_p weighting of Eq. 9 on both players
        ("wgan", 1.0, 0.5, 0.0, 0.0),
        ("nonsaturating", 1.0, 1.0, 0.0, 0.0),
        ("nonsaturating", 0.75, 1.5, 10.0, 0.0),
        ("hinge", 1.0, 1.0, 10.0, 3.0),  # all fake scores > -1: hinge is exact there
    ],
)
def test_one_pass_equals_two_pass(kind, w_d, w_g, gp_w, d_bias):
    ref_d, ref_g = _two_pass(*_toy(d_bias=d_bias), kind, w_d, w_g, gp_w)
    got_d, got_g = _one_pass(*_toy(d_bias=d_bias), kind, w_d, w_g, gp_w)
    assert len(ref_d) == len(got_d) and len(ref_g) == len(got_g)
    for a, b in zip(ref_d, got_d):
        if a is None:
            assert b is None or torch.count_nonzero(b) == 0
        else:
            torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)
    for a, b in zip(ref_g, got_g):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)
    assert any(g.abs().sum() > 0 for g in got_g)


def test_pose_gan_modules_one_pass_equals_two_pass():
    """The real pose branch: conditional critic D_p(P | P_in), WGAN-GP, L2 with the visibility mask."""

    def setup():
        torch.manual_seed(3)
        g = PoseGenerator(in_frames=6, out_frames=4, hidden=8, num_layers=6, noise_dim=3).double()
        d = PoseDiscriminator(hidden=8, num_layers=3).double()
        cur = torch.rand(3, 6, 17, 2, dtype=torch.double)
        fut = torch.rand(3, 4, 17, 2, dtype=torch.double)
        mask = torch.rand(3, 4, 17) > 0.2
        z = torch.randn(3, 3, dtype=torch.double)
        eps = torch.rand(3, dtype=torch.double)
        return g, d, cur, fut, mask, z, eps

    sigma = 0.75
    g, d, cur, fut, mask, z, eps = setup()
    crit = lambda v: d(v, cur)  # noqa: E731
    pred, _ = g(cur, z)
    loss_d = sigma * (L.d_adv_loss(crit(fut), crit(pred.detach())) + 10 * L.gradient_penalty(crit, fut, pred, eps))
    ref_d = torch.autograd.grad(loss_d, list(d.parameters()))
    loss_g = sigma * (L.g_adv_loss(crit(pred)) + L.pose_l2(pred, fut, mask))
    ref_g = torch.autograd.grad(loss_g, list(g.parameters()))

    g, d, cur, fut, mask, z, eps = setup()
    crit = lambda v: d(v, cur)  # noqa: E731
    os = OneStageGAN("wgan", d_weight=sigma, g_weight=sigma)
    pred, _ = g(cur, z)
    loss = os.discriminator_loss(crit(fut), crit(os.to_discriminator(pred)))
    loss = loss + sigma * 10 * L.gradient_penalty(crit, fut, pred, eps) + sigma * L.pose_l2(pred, fut, mask)
    loss.backward()
    for a, p in zip(ref_d, d.parameters()):
        torch.testing.assert_close(p.grad, a, rtol=1e-9, atol=1e-12)
    for a, p in zip(ref_g, g.parameters()):
        torch.testing.assert_close(p.grad, a, rtol=1e-9, atol=1e-12)


def test_hinge_saturated_refused():
    gen, disc, z, real, *_ = _toy(d_bias=-10.0)
    os = OneStageGAN("hinge")
    fake_scores = disc(os.to_discriminator(gen(z))).squeeze(-1)
    with pytest.raises(ValueError, match="critic's loss is flat"):
        os.discriminator_loss(disc(real).squeeze(-1), fake_scores)


def test_backward_before_scale_raises_and_bad_args():
    gen, disc, z, *_ = _toy()
    os = OneStageGAN("wgan")
    with pytest.raises(RuntimeError, match="before discriminator_loss"):
        disc(os.to_discriminator(gen(z))).sum().backward()
    with pytest.raises(ValueError, match="unknown GAN loss"):
        OneStageGAN("lsgan")
    with pytest.raises(ValueError, match=r"critic scores must be \(B,\)"):
        OneStageGAN().discriminator_loss(torch.zeros(2), torch.zeros(2, 1))


def test_without_reversal_generator_gradient_is_wrong():
    """Sanity check that the equivalence test can fail: a plain pass-through gives G the critic's gradient."""
    gen, disc, z, real, target, eps = _toy()
    _, ref_g = _two_pass(gen, disc, z, real, target, eps, "wgan", 1.0, 1.0, 0.0)
    gen, disc, z, real, target, eps = _toy()
    fake = gen(z)
    loss = L.d_adv_loss(disc(real).squeeze(-1), disc(fake).squeeze(-1))
    loss = loss + L.pose_l2(fake.view(5, 1, 3, 2), target.view(5, 1, 3, 2))
    loss.backward()
    assert not all(torch.allclose(p.grad, a) for p, a in zip(gen.parameters(), ref_g))
