"""Branch modules: pose GAN + aligner, context heads, integration layer, video GAN; the assembled model
(`train.system.CSVRModel`) and the fine-tuning network (`train.finetune.DownstreamNet`)."""

from __future__ import annotations

import pytest
import torch

from csvr.train.models import (
    AdaINIntegration,
    ConcatIntegration,
    MLPHead,
    MotionAligner,
    PoseDiscriminator,
    PoseGenerator,
    VideoDiscriminator,
    VideoGenerator,
)
from csvr.train.config import FinetuneConfig, ModelConfig
from csvr.train.finetune import DownstreamNet
from csvr.train.models.video_gen import start_size
from csvr.train.system import DISCRIMINATORS, GROUPS, CSVRModel

torch.set_num_threads(1)


def _grads_ok(module: torch.nn.Module) -> bool:
    gs = [p.grad for p in module.parameters()]
    return all(g is not None and torch.isfinite(g).all() for g in gs) and any(g.abs().sum() > 0 for g in gs)


# ------------------------------------------------------------------------------------------ pose
@pytest.mark.parametrize("layers", [2, 4, 6])
def test_pose_generator_shapes_and_backward(layers):
    torch.manual_seed(0)
    g = PoseGenerator(joints=17, in_frames=8, out_frames=6, hidden=32, num_layers=layers, noise_dim=4)
    pose = torch.rand(2, 8, 17, 2)
    fut, feats = g(pose)
    assert fut.shape == (2, 6, 17, 2)
    assert len(feats) == layers and all(f.shape == (2, 32, 8) for f in feats)
    assert g.feature_layer == layers
    torch.testing.assert_close(g.motion_feature_map(pose), feats[-1])
    fut.square().mean().backward()
    assert _grads_ok(g)


def test_pose_generator_noise_and_feature_layer():
    torch.manual_seed(0)
    g = PoseGenerator(in_frames=8, out_frames=8, hidden=16, num_layers=6, noise_dim=4, feature_layer=2).eval()
    pose = torch.rand(2, 8, 17, 2)
    a, feats = g(pose, torch.zeros(2, 4))
    b, _ = g(pose, torch.ones(2, 4))
    assert not torch.allclose(a, b), "noise must change the prediction"
    torch.testing.assert_close(g.motion_feature_map(pose), feats[1])
    with pytest.raises(ValueError, match="feature_layer must be in 1..6"):
        PoseGenerator(num_layers=6, feature_layer=7)
    with pytest.raises(ValueError, match="built for 8 input frames"):
        g(torch.rand(2, 5, 17, 2))
    with pytest.raises(ValueError, match=r"poses must be \(B, T, J, 2\)"):
        g(torch.rand(2, 8, 34))


def test_pose_discriminator_conditioned_and_per_sample():
    torch.manual_seed(0)
    d = PoseDiscriminator(joints=17, hidden=16, num_layers=3)
    cur, fut = torch.rand(3, 8, 17, 2), torch.rand(3, 6, 17, 2)
    s = d(fut, cur)
    assert s.shape == (3,)
    assert not torch.allclose(s, d(fut, torch.rand(3, 8, 17, 2))), "score must depend on the current poses"
    fut2 = fut.clone()
    fut2[1:] = torch.rand(2, 6, 17, 2)
    assert torch.allclose(d(fut2, cur)[0], s[0]), "critic must score samples independently (no batch norm)"
    s.sum().backward()
    assert _grads_ok(d)
    mask = torch.rand(3, 6, 17) > 0.5
    fut3 = torch.where(mask[..., None], fut, torch.rand(3, 6, 17, 2))
    torch.testing.assert_close(d(fut3, cur, mask), d(fut, cur, mask))


def test_motion_aligner():
    a = MotionAligner(in_channels=16, out_dim=24, hidden=32)
    out = a(torch.randn(2, 16, 8))
    assert out.shape == (2, 24)
    out.sum().backward()
    assert _grads_ok(a)


# ------------------------------------------------------------------------------------------ context
def test_mlp_head_flattens_instances():
    torch.manual_seed(0)
    h = MLPHead(10, 6, hidden=8).eval()
    x = torch.randn(2, 3, 10)
    out = h(x)
    assert out.shape == (2, 3, 6)
    torch.testing.assert_close(out[1, 2], h(x[1, 2][None])[0])
    with pytest.raises(ValueError, match="expects last dim 10"):
        h(torch.randn(2, 9))


# ------------------------------------------------------------------------------------------ integration
def test_adain_matches_hand_computation():
    torch.manual_seed(0)
    layer = AdaINIntegration(dim=3, gamma_offset=0.0)
    f_s = torch.tensor([[1.0, 2.0, -1.0], [3.0, 0.0, 1.0]])
    f_d = torch.tensor([[0.5, -0.5, 1.0], [1.0, 1.0, 0.0]])
    out = layer.parts(f_s, f_d)
    # Eq. 3 by hand: per channel mean/var over the batch (biased), eps = 1e-5
    mu = f_s.mean(0)
    var = ((f_s - mu) ** 2).mean(0)
    f_bar = (f_s - mu) / torch.sqrt(var + 1e-5)
    W_g, b_g = layer.to_gamma.weight, layer.to_gamma.bias
    W_b, b_b = layer.to_beta.weight, layer.to_beta.bias
    W_m, b_m = layer.to_mask.weight, layer.to_mask.bias
    gamma = torch.stack([torch.stack([sum(W_g[c, k] * f_d[i, k] for k in range(3)) + b_g[c] for c in range(3)]) for i in range(2)])
    beta = torch.stack([torch.stack([sum(W_b[c, k] * f_d[i, k] for k in range(3)) + b_b[c] for c in range(3)]) for i in range(2)])
    D = gamma * f_bar + beta  # Eq. 4
    logits = torch.stack([torch.stack([sum(W_m[c, k] * f_bar[i, k] for k in range(3)) + b_m[c] for c in range(3)]) for i in range(2)])
    M = 1 / (1 + torch.exp(-logits))
    f_i = (1 - M) * D + M * f_s  # Eq. 5
    torch.testing.assert_close(out["f_s_bar"], f_bar)
    torch.testing.assert_close(out["D"], D)
    torch.testing.assert_close(out["M"], M)
    torch.testing.assert_close(out["f_i"], f_i)
    torch.testing.assert_close(layer(f_s, f_d), f_i)


def test_adain_mask_extremes_and_backward():
    layer = AdaINIntegration(dim=4)
    f_s, f_d = torch.randn(5, 4), torch.randn(5, 4, requires_grad=True)
    with torch.no_grad():
        layer.to_mask.weight.zero_()
        layer.to_mask.bias.fill_(50.0)  # M -> 1: f_i == f_s
    torch.testing.assert_close(layer(f_s, f_d), f_s)
    with torch.no_grad():
        layer.to_mask.bias.fill_(-50.0)  # M -> 0: f_i == D
    p = layer.parts(f_s, f_d)
    torch.testing.assert_close(p["f_i"], p["D"])
    p["f_i"].sum().backward()
    assert f_d.grad is not None and f_d.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"f_s must be \(B, 4\)"):
        layer(torch.randn(5, 3), f_d)


def test_concat_integration():
    layer = ConcatIntegration(dim=4, motion_dim=2)
    f_s, f_d = torch.randn(3, 4), torch.randn(3, 2)
    expected = torch.cat([f_s, f_d], 1) @ layer.proj.weight.t() + layer.proj.bias
    torch.testing.assert_close(layer(f_s, f_d), expected)


# ------------------------------------------------------------------------------------------ video
def test_start_size():
    assert start_size(32) == (4, 3)
    assert start_size(64) == (4, 4)
    assert start_size(112) == (7, 4)
    with pytest.raises(ValueError, match="must be"):
        start_size(100 * 2)


@pytest.mark.parametrize("size", [32, 64, 112])
def test_video_generator_shapes(size):
    torch.manual_seed(0)
    g = VideoGenerator(cond_dim=8, frames=4, size=size, noise_dim=4, frame_latent=8, channels=32, min_channels=8)
    f_i = torch.randn(2, 8)
    v = g(f_i)
    assert v.shape == (2, 3, 4, size, size)
    assert v.min() >= -1 and v.max() <= 1
    z = torch.randn(2, 4)
    g.eval()
    assert not torch.allclose(g(f_i, z), g(f_i, z + 1)), "noise must change the video"
    assert not torch.allclose(g(f_i, z), g(f_i + 1, z)), "f_i must change the video"
    g.train()
    g(f_i).square().mean().backward()
    assert _grads_ok(g)


def test_video_discriminator_per_sample():
    torch.manual_seed(0)
    d = VideoDiscriminator(width=4)
    v = torch.randn(3, 3, 4, 32, 32)
    s = d(v)
    assert s.shape == (3,)
    v2 = v.clone()
    v2[1:] = torch.randn(2, 3, 4, 32, 32)
    assert torch.allclose(d(v2)[0], s[0])
    s.sum().backward()
    assert _grads_ok(d)


# ------------------------------------------------------------------------------------------ assembled
TINY = ModelConfig(
    backbone="s3d", embed_dim=16, pose_layers=6, noise_dim=4, video_size=32,
    options={"head_hidden": 32, "pose_hidden": 16, "gen_channels": 32, "gen_min_channels": 8, "frame_latent": 8,
             "disc_width": 4},
)
FRAMES, FUTURE = 8, 4


def _params(modules) -> set[int]:
    return {id(p) for m in modules for p in m.parameters()}


def test_csvr_model_features_and_generation():
    torch.manual_seed(0)
    model = CSVRModel(TINY, FRAMES, FUTURE)
    clip, pose = torch.randn(2, 3, FRAMES, 32, 32), torch.rand(2, FRAMES, 17, 2)
    f_s, f_d = model.video_embedding(clip), model.pose_features(pose)
    f_i = model.integrate(f_s, f_d)
    assert f_s.shape == f_d.shape == f_i.shape == (2, 16)
    fut, feats = model.pose_gen(pose)
    assert fut.shape == (2, FUTURE, 17, 2) and model.motion_feature(feats).shape == (2, 16)
    model.eval()  # one encoder pass gives the same f_d as the direct path
    torch.testing.assert_close(model.motion_feature(model.pose_gen(pose)[1]), model.pose_features(pose))
    model.train()
    frames = torch.randn(2, 3, 3, 32, 32)
    mask = torch.tensor([[True, False, True], [True, True, False]])
    zm = model.iframe_embeddings(frames, mask)
    assert zm.shape == (2, 3, 16)
    assert (zm[~mask] == 0).all() and (zm[mask].abs().sum(1) > 0).all()
    model.eval()  # without batch statistics the valid rows equal the embedding of every I-frame
    full = model.iframe_embeddings(frames, torch.ones_like(mask))
    torch.testing.assert_close(model.iframe_embeddings(frames, mask)[mask], full[mask])
    model.train()
    rec, pred = model.video_gen_r(f_i), model.video_gen_p(f_i)
    assert rec.shape == (2, 3, FRAMES, 32, 32) and pred.shape == (2, 3, FUTURE, 32, 32)
    assert model.video_disc_r(rec).shape == (2,) and model.video_disc_p(pred).shape == (2,)
    assert model.pose_disc(fut, pose).shape == (2,)
    # discriminator and generator/encoder parameters: disjoint, together every parameter
    d_ids = _params(model.groups(DISCRIMINATORS).values())
    g_ids = _params(model.groups([g for g in GROUPS if g not in DISCRIMINATORS]).values())
    assert d_ids and g_ids and not d_ids & g_ids
    assert d_ids | g_ids == {id(p) for p in model.parameters()}
    assert set(model.group_state(GROUPS)) == set(model.state_dict())
    with pytest.raises(ValueError, match=r"model.options: unknown key\(s\) \['bogus'\]"):
        CSVRModel(ModelConfig(backbone="s3d", options={"bogus": 1}), FRAMES, FUTURE)


@pytest.mark.parametrize("variant", ["fi", "fs", "fd", "concat", "scratch"])
def test_downstream_variants(variant):
    torch.manual_seed(0)
    net = DownstreamNet(TINY, variant, num_classes=5, dropout=0.3)
    clip, pose = torch.randn(2, 3, FRAMES, 32, 32), torch.rand(2, FRAMES, 17, 2)
    logits = net(clip, pose)
    assert logits.shape == (2, 5)
    logits.sum().backward()
    assert net.dropout.p == 0.3
    for name, p in net.named_parameters():  # every module the variant builds is used
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert net.classifier.weight.grad.abs().sum() > 0
    assert hasattr(net, "vnet") == (variant != "fd")
    assert hasattr(net, "pose_encoder") == (variant != "fs")
    assert hasattr(net, "integration") == (variant in ("fi", "concat", "scratch"))
    if variant == "fs":  # the pooled V-Network feature, no pose input
        assert net.classifier.in_features == net.vnet.feature_dim and net(clip, None).shape == (2, 5)
    else:
        assert net.classifier.in_features == 16
    if variant == "fd":
        assert net(None, pose).shape == (2, 5)
    if variant == "concat":  # the concat integration whatever model.integration says
        assert isinstance(net.integration, ConcatIntegration)
    if variant in ("fi", "scratch"):
        assert isinstance(net.integration, AdaINIntegration)


def _pretrain_ckpt(tmp_path, cfg: ModelConfig):
    from dataclasses import asdict

    from csvr.train import checkpoint as ckpt_mod

    model = CSVRModel(cfg, FRAMES, FUTURE)
    ck = ckpt_mod.make_checkpoint(kind="pretrain-stage", model=model, optimizer=None, scheduler=None,
                                  progress={}, config={}, extra={"model_config": asdict(cfg),
                                                                 "valid_groups": list(GROUPS)})
    return model, ckpt_mod.save_atomic(ck, tmp_path / "pre.pt")


def test_downstream_loads_pretrained_and_refuses_wrong_integration(tmp_path):
    from csvr.train import checkpoint as ckpt_mod
    from csvr.train.finetune import load_pretrained

    torch.manual_seed(0)
    model, path = _pretrain_ckpt(tmp_path, TINY)
    net = DownstreamNet(TINY, "fi", 3, 0.3)
    loaded = load_pretrained(net, path, FinetuneConfig(model=TINY, variant="fi"))
    assert set(loaded) == {"vnet", "head_v", "pose_gen", "motion_align", "integration"}
    # weights are copies of the pretrained ones (not shared)
    p0, q0 = next(net.vnet.parameters()), next(model.vnet.parameters())
    assert p0 is not q0
    torch.testing.assert_close(p0, q0)
    torch.testing.assert_close(net.pose_encoder.state_dict(), model.pose_gen.encoder.state_dict())
    # an AdaIN-pretrained model cannot be fine-tuned as variant fi with integration=concat
    concat = ModelConfig(**{**TINY.__dict__, "integration": "concat"})
    with pytest.raises(ckpt_mod.CheckpointError, match="integration 'adain' was pretrained but the config asks for 'concat'"):
        load_pretrained(DownstreamNet(concat, "fi", 3, 0.3), path, FinetuneConfig(model=concat, variant="fi"))
    # the concat variant loads a concat-pretrained integration layer
    _, cpath = _pretrain_ckpt(tmp_path, concat)
    assert "integration" in load_pretrained(DownstreamNet(concat, "concat", 3, 0.3), cpath,
                                            FinetuneConfig(model=concat, variant="concat"))


def test_generators_fit_random_targets():
    """A few optimiser steps lower the L2 terms of the real pose and video generators."""
    from csvr.train import losses as L

    torch.manual_seed(0)
    g = PoseGenerator(in_frames=8, out_frames=4, hidden=16, num_layers=6, noise_dim=4)
    cur, fut, mask = torch.rand(4, 8, 17, 2), torch.rand(4, 4, 17, 2), torch.rand(4, 4, 17) > 0.3
    vg = VideoGenerator(cond_dim=8, frames=2, size=16, noise_dim=4, frame_latent=8, channels=16, min_channels=8)
    f_i, vid = torch.randn(4, 8), torch.rand(4, 3, 2, 16, 16) * 2 - 1
    z = torch.randn(4, 4)
    for fn, params in ((lambda: L.pose_l2(g(cur, z)[0], fut, mask), g.parameters()),
                       (lambda: L.video_l2(vg(f_i, z), vid), vg.parameters())):
        opt = torch.optim.Adam(params, lr=1e-2)
        first = fn().item()
        for _ in range(10):
            opt.zero_grad()
            fn().backward()
            opt.step()
        assert fn().item() < first


def test_csvr_joint_one_stage_step():
    """Eq. 9 with every branch, the three GANs updated by OSGAN: one backward reaches every module group."""
    from csvr.train import losses as L
    from csvr.train.osgan import OneStageGAN

    torch.manual_seed(0)
    model = CSVRModel(TINY, FRAMES, FUTURE)
    clip, fclip = torch.rand(2, 3, FRAMES, 32, 32) * 2 - 1, torch.rand(2, 3, FUTURE, 32, 32) * 2 - 1
    pose, fpose, fmask = torch.rand(2, FRAMES, 17, 2), torch.rand(2, FUTURE, 17, 2), torch.rand(2, FUTURE, 17) > 0.2
    iframes, imask = torch.randn(2, 2, 3, 32, 32), torch.tensor([[True, True], [True, False]])
    sp = sc = 0.75
    f_s = model.video_embedding(clip)
    l_ctx = L.mi_infonce(f_s, model.iframe_embeddings(iframes, imask), imask)
    pred_pose, feats = model.pose_gen(pose)
    f_d = model.motion_feature(feats)
    os_p = OneStageGAN("wgan", d_weight=sp, g_weight=sp)
    crit_p = lambda v: model.pose_disc(v, pose)  # noqa: E731
    l_pose = os_p.discriminator_loss(crit_p(fpose), crit_p(os_p.to_discriminator(pred_pose))) / sp
    l_pose = l_pose + 10 * L.gradient_penalty(crit_p, fpose, pred_pose) + L.pose_l2(pred_pose, fpose, fmask)
    f_i = model.integrate(f_s, f_d)
    l_video = []
    for gen, target, disc in ((model.video_gen_r, clip, model.video_disc_r), (model.video_gen_p, fclip, model.video_disc_p)):
        gen_out = gen(f_i)
        os_v = OneStageGAN("wgan", d_weight=0.5, g_weight=0.5)
        adv = os_v.discriminator_loss(disc(target), disc(os_v.to_discriminator(gen_out))) / 0.5
        l_video.append(adv + 10 * L.gradient_penalty(disc, target, gen_out) + L.video_l2(gen_out, target))
    loss = sp * l_pose + sc * l_ctx + (l_video[0] + l_video[1]) / 2  # Eq. 9 with Eq. 8
    assert torch.isfinite(loss)
    loss.backward()
    for name, module in model.groups(GROUPS).items():
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name
