"""The video stage's `condition` (docs/training.md, "Stage order"): `features` drives the generators with
f_i from the frozen encoders; `noise` is TGAN-v2's unconditional GAN (Gaussian noise in f_i's place, no
L2), the paper's IV-B reading of "TGAN v2 pretrained with its own objective before the whole network"."""

from __future__ import annotations

import pytest
import torch

from csvr.train.config import ConfigError, PretrainConfig, load_config
from csvr.train.loop import autocast_context, first_non_finite
from csvr.train.steps import LossModule, StepContext, video_step
from csvr.train.system import CSVRModel, stage_groups

from train_testdata import FAST, TINY_PRETRAIN

torch.set_num_threads(1)
B, FRAMES, SIZE = 4, 4, 16
OVERRIDES = (*FAST, f"batch_size={B}", f"data.frames={FRAMES}", f"data.future_frames={FRAMES}",
             f"data.crop={SIZE}", f"data.input_size={SIZE}", f"model.video_size={SIZE}",
             "model.options.frame_latent=8", "model.options.gen_min_channels=8")


def _step(condition: str):
    cfg = load_config(PretrainConfig, TINY_PRETRAIN, [*OVERRIDES, "loss.video_l2_weight=100"])
    torch.manual_seed(0)
    net = CSVRModel(cfg.model, FRAMES, FRAMES)
    groups = stage_groups("video", cfg.loss.video_targets, condition)
    for name in ("vnet", "head_v", "pose_gen", "motion_align", "integration"):
        getattr(net, name).requires_grad_(name in groups)
    g = torch.Generator().manual_seed(1)
    batch = {"clip": torch.randn(B, 3, FRAMES, SIZE, SIZE, generator=g),
             "future_clip": torch.randn(B, 3, FRAMES, SIZE, SIZE, generator=g),
             "pose": torch.rand(B, FRAMES, 17, 3, generator=g)}

    def check(terms):
        assert first_non_finite(terms) is None

    ctx = StepContext(loss=cfg.loss, model=cfg.model, groups=groups, check=check, frozen_features=True,
                      autocast=lambda: autocast_context(torch.device("cpu"), "none"), video_condition=condition)
    opt = torch.optim.SGD([p for n in groups for p in getattr(net, n).parameters()], lr=0.0)
    return net, groups, video_step(LossModule(net), batch, opt, ctx)


def test_noise_condition_trains_only_the_gans_and_no_l2():
    net, groups, out = _step("noise")
    assert groups == ("video_gen_r", "video_gen_p", "video_disc_r", "video_disc_p")
    # every listed group got a gradient (grad_norms raises otherwise), and f_i's makers got none
    assert all(out[f"grad_norm/{g}"] > 0 for g in groups)
    assert all(p.grad is None for n in ("motion_align", "integration", "vnet") for p in getattr(net, n).parameters())
    # the branch total is the critic terms only: L2 is logged, not trained
    for prefix in ("video_r", "video_p"):
        critic_only = out[f"loss/{prefix}_d"] + 10.0 * out[f"loss/{prefix}_gp"]  # gp_weight 10 (LossConfig)
        assert out[f"loss/{prefix}"] == pytest.approx(critic_only, rel=1e-3, abs=1e-3)
        assert out[f"loss/{prefix}_l2"] > 0


def test_features_condition_trains_the_integration_with_the_l2():
    net, groups, out = _step("features")
    assert {"motion_align", "integration"} <= set(groups)
    assert out["grad_norm/integration"] > 0 and out["grad_norm/motion_align"] > 0
    for prefix in ("video_r", "video_p"):
        with_l2 = out[f"loss/{prefix}_d"] + 10.0 * out[f"loss/{prefix}_gp"] + 100 * out[f"loss/{prefix}_l2"]
        assert out[f"loss/{prefix}"] == pytest.approx(with_l2, rel=1e-3, abs=1e-3)


def test_noise_condition_is_refused_outside_the_video_stage():
    with pytest.raises(ConfigError, match="condition: 'noise' applies to the video stage only"):
        load_config(PretrainConfig, TINY_PRETRAIN, ["stages=[{name: joint, steps: 1, condition: noise}]"])
    with pytest.raises(ConfigError, match=r"condition: must be one of \['features', 'noise'\]"):
        load_config(PretrainConfig, TINY_PRETRAIN, ["stages=[{name: video, steps: 1, condition: zeros}]"])
