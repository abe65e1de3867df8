"""`csvr evaluate code-probe`: the reconstruction ceiling of a frozen code, on a tiny pretrained model."""

from __future__ import annotations

import numpy as np
import torch

from csvr.evaluate.code_probe import ProbeConfig, fresh_copy, probe_markdown, run_probe
from csvr.train.config import PretrainConfig, load_config
from csvr.train.models.video_gen import VideoGenerator
from csvr.train.pretrain import pretrain

from train_testdata import FAST, TINY_PRETRAIN, train_store  # noqa: F401  (fixture)


def test_fresh_copy_keeps_the_architecture_and_redraws_the_weights():
    torch.manual_seed(0)
    gen = VideoGenerator(cond_dim=8, frames=2, size=16, noise_dim=4, frame_latent=4, channels=16, min_channels=8)
    new = fresh_copy(gen)
    old, fresh = gen.state_dict(), new.state_dict()
    assert old.keys() == fresh.keys() and all(old[k].shape == fresh[k].shape for k in old)
    assert not torch.equal(old["temporal_in.weight"], fresh["temporal_in.weight"])


def test_probe_scores_every_code_against_the_mean_frame(train_store, tmp_path):  # noqa: F811
    cfg = load_config(PretrainConfig, TINY_PRETRAIN, [*FAST, "stages=[{name: context, steps: 2}]"])
    pretrain(cfg, train_store, tmp_path / "run")
    res = run_probe(tmp_path / "run/checkpoints/final.pt", train_store, ProbeConfig(passes=1, steps=20, batch=4))
    frames, size = cfg.data.frames, cfg.model.video_size
    assert res["size"] == size and res["train_clips"] == 16 and res["test_clips"] == 8
    assert {k: v["dim"] for k, v in res["codes"].items()} == {"head": cfg.model.embed_dim, "pooled": 128,  # r3d_18 at width 0.25
                                                               "oracle": 3 * frames * 16}
    values = [res["mean_frame_psnr"]] + [v[k] for v in res["codes"].values() for k in ("test_psnr", "train_psnr")]
    assert all(np.isfinite(values)) and all(5 < v < 60 for v in values)
    assert "| oracle | " in probe_markdown(res)
