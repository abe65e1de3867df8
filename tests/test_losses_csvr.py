"""CSVR losses vs hand computations / naive loops, the MI-InfoNCE == InfoNCE identity, and descent."""

from __future__ import annotations

import math

import pytest
import torch

from csvr.train import losses as L

torch.set_num_threads(1)


# ------------------------------------------------------------------------------ context matching
def _naive_mi_infonce(x, z, mask, tau, video_ids=None):
    """Independent double loop over clips and I-frames (Eq. 2)."""
    b, k, _ = z.shape
    total = 0.0
    for i in range(b):
        xi = x[i] / x[i].norm()
        num, neg = 0.0, 0.0
        for j in range(b):
            for m in range(k):
                if not mask[j, m]:
                    continue
                s = math.exp(float(xi @ (z[j, m] / z[j, m].norm())) / tau)
                if j == i:
                    num += s
                elif video_ids is None or video_ids[j] != video_ids[i]:
                    neg += s
        total += -math.log(num / (num + neg))
    return total / b


def test_mi_infonce_by_hand():
    # x1 = e1, x2 = e2; clip 1 has I-frames e1 and (e1+e2)/sqrt2, clip 2 has e2 and a padded slot.
    x = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    z = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, True], [True, False]])
    tau = 0.5
    c = 1 / math.sqrt(2)
    # clip 1: positives cos 1 and c; negative e2 -> cos 0
    l1 = -math.log((math.exp(1 / tau) + math.exp(c / tau)) / (math.exp(1 / tau) + math.exp(c / tau) + math.exp(0)))
    # clip 2: positive cos 1; negatives e1 -> 0 and (e1+e2)/sqrt2 -> c
    l2 = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(0) + math.exp(c / tau)))
    got = L.mi_infonce(x, z, mask, temperature=tau)
    assert got.item() == pytest.approx((l1 + l2) / 2, rel=1e-6)


def test_mi_infonce_matches_naive_loop_with_mask_and_video_ids():
    g = torch.Generator().manual_seed(0)
    x, z = torch.randn(4, 5, generator=g), torch.randn(4, 3, 5, generator=g)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.bool)
    ids = torch.tensor([0, 1, 0, 2])
    for vid in (None, ids):
        got = L.mi_infonce(x, z, mask, temperature=0.2, video_ids=vid).item()
        assert got == pytest.approx(_naive_mi_infonce(x, z, mask, 0.2, vid), rel=1e-5)


def test_mi_infonce_equals_infonce_with_one_positive():
    g = torch.Generator().manual_seed(1)
    x, z = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    torch.testing.assert_close(L.mi_infonce(x, z[:, None], temperature=0.1), L.infonce(x, z, temperature=0.1))
    # padded I-frames leaving exactly one valid positive per clip give the same value
    zk = torch.randn(6, 3, 8, generator=g)
    pick = torch.tensor([0, 2, 1, 1, 0, 2])
    zk[torch.arange(6), pick] = z
    mask = torch.zeros(6, 3, dtype=torch.bool)
    mask[torch.arange(6), pick] = True
    torch.testing.assert_close(L.mi_infonce(x, zk, mask, temperature=0.1), L.infonce(x, z, temperature=0.1))


def test_infonce_by_naive_loop():
    g = torch.Generator().manual_seed(2)
    x, z = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    tau = 0.3
    ref = 0.0
    for i in range(3):
        s = [math.exp(float(torch.cosine_similarity(z[k], x[i], dim=0)) / tau) for k in range(3)]
        ref += -math.log(s[i] / sum(s))
    assert L.infonce(x, z, tau).item() == pytest.approx(ref / 3, rel=1e-6)


def test_context_errors():
    with pytest.raises(ValueError, match=r"clips \[1\] have no valid I-frame"):
        L.mi_infonce(torch.randn(2, 3), torch.randn(2, 2, 3), torch.tensor([[True, False], [False, False]]))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        L.mi_infonce(torch.randn(2, 3), torch.randn(2, 2, 3), temperature=0)
    with pytest.raises(ValueError, match=r"video_emb \(B, C\) and iframe_emb \(B, K, C\)"):
        L.mi_infonce(torch.randn(2, 3), torch.randn(2, 3))


def test_context_l2_by_hand():
    x = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    z = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    # unit vectors: clip 1 identical (0); clip 2 e1 vs e2 -> ||e1 - e2||^2 = 2; mean 1
    assert L.context_l2(x, z).item() == pytest.approx(1.0)
    # raw: (0 + (1 + 4)) / 2
    assert L.context_l2(x, z, normalize=False).item() == pytest.approx(2.5)


def test_select_iframe_respects_mask():
    z = torch.arange(2 * 3 * 1, dtype=torch.float).view(2, 3, 1)
    mask = torch.tensor([[False, True, False], [True, True, True]])
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(30):
        out = L.select_iframe(z, mask, generator=g)
        assert out[0, 0].item() == 1.0
        seen.add(out[1, 0].item())
    assert seen == {3.0, 4.0, 5.0}


# ------------------------------------------------------------------------------ reconstruction
def test_pose_l2_by_hand():
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 2.0]], [[3.0, 0.0], [1.0, 1.0]]]])  # (1, T'=2, J=2, 2)
    # per frame sum over joints: t0 = 1 + 4 = 5, t1 = 9 + 2 = 11 -> mean over T' = 8
    assert L.pose_l2(pred, target).item() == pytest.approx(8.0)
    mask = torch.tensor([[[True, False], [False, True]]])  # keep 1 (t0) and 2 (t1)
    assert L.pose_l2(pred, target, mask).item() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="mask shape"):
        L.pose_l2(pred, target, torch.ones(1, 2, 3))


def test_video_l2_by_hand():
    pred = torch.zeros(1, 3, 1, 1, 2)
    target = torch.tensor([1.0, 2.0, 0.0, 0.0, 0.0, 2.0]).view(1, 3, 1, 1, 2)
    # pixel 0: 1 + 0 + 0 = 1; pixel 1: 4 + 0 + 4 = 8 -> mean 4.5
    assert L.video_l2(pred, target).item() == pytest.approx(4.5)


# ------------------------------------------------------------------------------ adversarial
def test_adversarial_by_hand():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 0.5])
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert L.d_adv_loss(real, fake, "wgan").item() == pytest.approx((-1 + 0.5) / 2 - 1.0)
    assert L.g_adv_loss(fake, "wgan").item() == pytest.approx(0.25)
    assert L.d_adv_loss(real, fake, "nonsaturating").item() == pytest.approx(
        (sp(-2) + sp(0)) / 2 + (sp(-1) + sp(0.5)) / 2, rel=1e-6
    )
    assert L.g_adv_loss(fake, "nonsaturating").item() == pytest.approx((sp(1) + sp(-0.5)) / 2, rel=1e-6)
    assert L.d_adv_loss(real, fake, "hinge").item() == pytest.approx((0 + 1) / 2 + (0 + 1.5) / 2)
    with pytest.raises(ValueError, match="unknown GAN loss"):
        L.g_adv_loss(fake, "lsgan")


def test_gradient_penalty_linear_critic_exact():
    w = torch.tensor([3.0, 4.0], requires_grad=True)
    real, fake = torch.randn(4, 2), torch.randn(4, 2)
    gp = L.gradient_penalty(lambda x: x @ w, real, fake)
    assert gp.item() == pytest.approx((5.0 - 1.0) ** 2)
    gp.backward()  # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    torch.testing.assert_close(w.grad, 2 * 4.0 * torch.tensor([3.0, 4.0]) / 5.0)


def test_gradient_penalty_matches_finite_differences_and_touches_only_critic():
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    gen = torch.nn.Linear(3, 3).double()
    real = torch.randn(2, 3, dtype=torch.double)
    fake = gen(torch.randn(2, 3, dtype=torch.double))
    eps = torch.tensor([0.3, 0.8], dtype=torch.double)
    f = lambda v: critic(v).squeeze(-1)  # noqa: E731
    gp = L.gradient_penalty(f, real, fake, eps=eps)
    xs = eps[:, None] * real + (1 - eps[:, None]) * fake.detach()
    ref = 0.0
    h = 1e-6
    for i in range(2):
        grad = []
        for d in range(3):
            e = torch.zeros(3, dtype=torch.double)
            e[d] = h
            grad.append((f(xs[i] + e) - f(xs[i] - e)).item() / (2 * h))
        ref += (math.sqrt(sum(g * g for g in grad)) - 1) ** 2
    assert gp.item() == pytest.approx(ref / 2, rel=1e-6)
    gp.backward()
    assert all(p.grad is None for p in gen.parameters()), "the penalty must not reach the generator"
    # every critic parameter that shapes grad_x D gets a gradient (the output bias does not)
    assert all(p.grad is not None for p in (critic[0].weight, critic[0].bias, critic[2].weight))


# ------------------------------------------------------------------------------ descent
def _descends(loss_fn, params, steps=20, lr=0.1):
    opt = torch.optim.SGD(params, lr=lr)
    first = None
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        first = loss.item() if first is None else first
        loss.backward()
        opt.step()
    return first, loss_fn().item()


@pytest.mark.parametrize(
    "name",
    ["mi_infonce", "infonce", "context_l2", "pose_l2", "video_l2", "d_wgan_gp", "d_nonsaturating", "g_nonsaturating", "d_hinge"],
)
def test_few_steps_lower_each_loss(name):
    torch.manual_seed(0)
    x = torch.randn(4, 8, requires_grad=True)
    z = torch.randn(4, 3, 8, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 1]], dtype=torch.bool)
    pose_t, pose_p = torch.rand(2, 4, 17, 2), torch.zeros(2, 4, 17, 2, requires_grad=True)
    pose_m = torch.rand(2, 4, 17) > 0.3
    vid_t, vid_p = torch.rand(2, 3, 2, 4, 4) * 2 - 1, torch.zeros(2, 3, 2, 4, 4, requires_grad=True)
    critic = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    real, fake = torch.randn(8, 8) + 1.0, torch.randn(8, 8) - 1.0
    crit = lambda v: critic(v).squeeze(-1)  # noqa: E731
    fake_param = torch.randn(8, 8, requires_grad=True)
    cases = {
        "mi_infonce": (lambda: L.mi_infonce(x, z, mask, temperature=0.5), [x, z]),
        "infonce": (lambda: L.infonce(x, z[:, 0], temperature=0.5), [x, z]),
        "context_l2": (lambda: L.context_l2(x, z[:, 0]), [x, z]),
        "pose_l2": (lambda: L.pose_l2(pose_p, pose_t, pose_m), [pose_p]),
        "video_l2": (lambda: L.video_l2(vid_p, vid_t), [vid_p]),
        "d_wgan_gp": (lambda: L.d_adv_loss(crit(real), crit(fake)) + 10 * L.gradient_penalty(crit, real, fake), list(critic.parameters())),
        "d_nonsaturating": (lambda: L.d_adv_loss(crit(real), crit(fake), "nonsaturating"), list(critic.parameters())),
        "g_nonsaturating": (lambda: L.g_adv_loss(crit(fake_param), "nonsaturating"), [fake_param]),
        "d_hinge": (lambda: L.d_adv_loss(crit(real), crit(fake), "hinge"), list(critic.parameters())),
    }
    fn, params = cases[name]
    first, last = _descends(fn, params, lr=0.05 if name == "d_wgan_gp" else 0.1)
    assert last < first, f"{name}: {first} -> {last}"


def test_critic_drift_term_is_added_to_the_critic_objective():
    from csvr.train.config import LossConfig
    from csvr.train.steps import _gan_terms

    torch.manual_seed(0)
    disc = torch.nn.Linear(3, 1)
    real, fake = torch.randn(4, 3) * 5, torch.randn(4, 3)
    l2 = torch.zeros(())

    def total(drift: float) -> torch.Tensor:
        cfg = LossConfig(gp_weight=0.0, drift_weight=drift)
        return _gan_terms("x", lambda v: disc(v).squeeze(1), fake, real, 0.5, cfg, None, l2)["_backward"]

    expected = 0.5 * 0.01 * disc(real).squeeze(1).pow(2).mean()
    torch.testing.assert_close(total(0.01) - total(0.0), expected)
