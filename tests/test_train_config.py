"""Config loading: defaults, overrides, validation errors that name the file and key, saved run config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from csvr.train.config import ConfigError, FinetuneConfig, PretrainConfig, load_config, save_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted((CONFIGS / "pretrain").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_pretrain_config_validates(path):
    cfg = load_config(PretrainConfig, path)
    if path.name != "tiny.yaml":  # paper defaults (Section IV-B)
        assert (cfg.data.frames, cfg.data.stride, cfg.data.crop, cfg.batch_size) == (16, 4, 112, 16)
        assert (cfg.optim.name, cfg.optim.momentum, cfg.optim.weight_decay) == ("sgd", 0.9, 0.005)
        assert cfg.optim.lr_per_sample == 0.0005 and cfg.loss.sigma_p == cfg.loss.sigma_c == 0.75
        # the video generators are conditioned on the trained encoders (docs/training.md), lengths in epochs
        assert [s.name for s in cfg.stages] == ["pose", "context", "video", "joint"]
        assert cfg.stages[2].init_from == ["pose", "context"]
        assert all(s.epochs and s.steps is None for s in cfg.stages)
        assert cfg.stages[3].epochs == 200  # Table VI
        assert cfg.data.augment == ["random_crop", "flip", "gaussian_blur", "color_jitter"]


@pytest.mark.parametrize("path", sorted((CONFIGS / "finetune").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_finetune_config_validates(path):
    cfg = load_config(FinetuneConfig, path)
    if path.name.startswith("ucf101"):
        assert (cfg.batch_size, cfg.epochs, cfg.optim.lr_per_sample, cfg.optim.weight_decay) == (32, 100, 0.0001, 0.003)
    if path.name.startswith("hmdb51"):
        assert (cfg.batch_size, cfg.epochs, cfg.optim.lr_per_sample, cfg.optim.weight_decay) == (32, 100, 0.0002, 0.002)
    if path.name != "tiny.yaml":
        assert cfg.dropout == 0.3 and cfg.optim.schedule == "cosine" and cfg.variant == "fi"


def test_shipped_configs_cover_every_backbone():
    names = {p.stem for p in (CONFIGS / "pretrain").glob("*.yaml")}
    for ds in ("ucf101", "k400"):
        for bb in ("r2plus1d_18", "r3d_18", "c3d", "s3d"):
            assert f"{ds}_{bb}" in names
            if ds == "ucf101":
                assert (CONFIGS / "finetune" / f"ucf101_{bb}.yaml").is_file()
                assert (CONFIGS / "finetune" / f"hmdb51_{bb}.yaml").is_file()


def _write(tmp_path, data) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("data, message", [
    ({"batch_sise": 4}, "config: unknown key(s) ['batch_sise']"),
    ({"batch_size": "four"}, "config.batch_size: expected an integer, got 'four'"),
    ({"batch_size": 0}, "config.batch_size: must be > 0, got 0"),
    ({"optim": {"momentum": 1.5}}, "config.optim.momentum: must be in [0, 1)"),
    ({"optim": {"name": "lamb"}}, "config.optim.name: must be one of ['sgd', 'adam'], got 'lamb'"),
    ({"data": {"augment": ["mixup"]}}, "config.data.augment: unknown augmentation(s) ['mixup']"),
    ({"stages": [{"name": "joint", "steps": 1, "init_from": ["pose"]}, {"name": "pose", "steps": 1}]},
     "config.stages[0].init_from: ['pose'] must come before 'joint'"),
    ({"stages": [{"name": "pose", "epochs": 1}, {"name": "pose", "epochs": 1}]},
     "config.stages[1].name: stage 'pose' appears twice"),
    ({"stages": [{"name": "pose"}]}, "config.stages[0]: give the stage's length as epochs or steps"),
    ({"stages": [{"name": "pose", "epochs": 0}]}, "config.stages[0].epochs: must be > 0"),
    ({"global_batch_size": 0}, "config.global_batch_size: must be > 0"),
    ({"stages": [{"name": "warmup"}]}, "config.stages[0].name: must be one of"),
    ({"stages": [{"steps": 3}]}, "config.stages[0]: missing required key 'name'"),
    ({"model": {"video_size": 60}}, "config.model.video_size: must be a multiple of 8"),
    ({"data": {"crop": 64}, "model": {"video_size": 112}}, "video_size: 112 exceeds the network input size 64"),
])
def test_invalid_configs_name_file_and_key(tmp_path, data, message):
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(PretrainConfig, path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(PretrainConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(PretrainConfig, bad)


def test_overrides_by_path_index_and_stage_name(tmp_path):
    cfg = load_config(PretrainConfig, CONFIGS / "pretrain" / "tiny.yaml",
                      ["batch_size=2", "optim.grad_clip=null", "stages.pose.steps=7", "stages.1.enabled=false",
                       "model.options.pose_hidden=16", "data.augment=[flip]"])
    assert cfg.batch_size == 2 and cfg.optim.grad_clip is None
    assert cfg.stages[0].steps == 7 and cfg.stages[1].enabled is False
    assert cfg.model.options == {"head_hidden": 128, "pose_hidden": 16} and cfg.data.augment == ["flip"]
    with pytest.raises(ConfigError, match="no list item named 'warmup'"):
        load_config(PretrainConfig, CONFIGS / "pretrain" / "tiny.yaml", ["stages.warmup.steps=1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(PretrainConfig, None, ["batch_size"])


def test_saved_config_reloads_identically_and_records_code_version(tmp_path):
    cfg = load_config(PretrainConfig, CONFIGS / "pretrain" / "ucf101_r2plus1d_18.yaml", ["run.seed=3"])
    path = save_config(cfg, tmp_path / "run", {"store": "s.zarr"})
    saved = yaml.safe_load(path.read_text())
    meta = saved["meta"]
    assert meta["kind"] == "PretrainConfig" and meta["store"] == "s.zarr"
    assert meta["code_version"].get("commit") or meta["code_version"].get("package")
    if "commit" in meta["code_version"]:
        assert len(meta["code_version"]["commit"]) == 40 and isinstance(meta["code_version"]["dirty"], bool)
    again = load_config(PretrainConfig, path)  # a run folder's config reproduces the run's config
    assert again == cfg


def test_finetune_defaults_follow_the_paper():
    cfg = load_config(FinetuneConfig)
    assert (cfg.batch_size, cfg.epochs, cfg.dropout, cfg.variant) == (32, 100, 0.3, "fi")
    assert (cfg.optim.name, cfg.optim.schedule, cfg.optim.lr_per_sample, cfg.optim.weight_decay) == \
        ("sgd", "cosine", 0.0001, 0.003)
    with pytest.raises(ConfigError, match="config.variant: must be one of"):
        load_config(FinetuneConfig, None, ["variant=fx"])
