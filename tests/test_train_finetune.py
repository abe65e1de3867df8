"""Fine-tuning: beats chance on the synthetic store; checkpoints that do not fit a variant are refused."""

from __future__ import annotations

import json

import pytest
import torch

from csvr.train import checkpoint as ckpt
from csvr.train.config import ConfigError, FinetuneConfig, PretrainConfig, load_config
from csvr.train.finetune import DownstreamNet, finetune, load_finetuned
from csvr.train.pretrain import load_pretrained_model, pretrain
from train_testdata import TINY_FINETUNE, TINY_PRETRAIN, stage_list, train_store  # noqa: F401

FT_FAST = ("batch_size=4", "data.frames=4", "data.crop=32", "data.num_workers=0", "run.threads=1",
           "run.tensorboard=false", "eval_clips_per_video=2")


@pytest.fixture(scope="module")
def pose_ckpt(train_store, tmp_path_factory):
    """A pretraining run with only the pose stage (what the fd variant needs)."""
    torch.set_num_threads(1)
    # the tiny config's model sizes (FAST's narrower pose networks learn too slowly for the accuracy test)
    fast = ("batch_size=4", "data.frames=8", "data.future_frames=8", "data.crop=32", "data.num_workers=0",
            "data.max_iframes=2", "model.video_size=16", "run.threads=1", "run.image_every=0",
            "run.tensorboard=false")
    cfg = load_config(PretrainConfig, TINY_PRETRAIN, fast + tuple(stage_list(pose=3)))
    return pretrain(cfg, train_store, tmp_path_factory.mktemp("pre") / "run")


def test_pose_feature_finetune_beats_chance(train_store, pose_ckpt, tmp_path):
    cfg = load_config(FinetuneConfig, TINY_FINETUNE,
                      FT_FAST + ("variant=fd", "epochs=15", "data.frames=8", "optim.lr_per_sample=0.0025", "dropout=0.0"))
    result = finetune(cfg, train_store, tmp_path / "ft", pretrained=pose_ckpt)
    chance = 1 / result["num_classes"]
    assert result["num_classes"] == 4
    assert result["last_top1"] >= 2 * chance, result          # the last epoch, clearly above chance (0.25)
    assert "best_top1" not in result
    evals = [json.loads(x) for x in (tmp_path / "ft" / "log.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e["stage"] == "eval"]
    assert len(evals) == 15 and all(e["eval_clips"] == 16 for e in evals)  # 8 test videos x 2 clips
    assert evals[-1]["acc/top1"] == pytest.approx(result["last_top1"]) and not any("best_top1" in e for e in evals)
    last = torch.load(tmp_path / "ft" / "checkpoints" / "last.pt", weights_only=True)
    assert last["progress"]["top1"] == pytest.approx(result["last_top1"]) and "best_top1" not in last["progress"]
    assert last["progress"]["epoch"] == 15 and last["optimizer"] is not None
    mcfg = load_config(PretrainConfig, raw={"model": last["model_config"]}).model
    net = DownstreamNet(mcfg, last["variant"], last["num_classes"], 0.0)
    net.load_state_dict(last["model"])  # the last checkpoint alone rebuilds the network
    net = load_finetuned(tmp_path / "ft" / "checkpoints" / "last.pt")
    logits = net(torch.zeros(2, 3, 8, 32, 32), torch.rand(2, 8, 17, 2))
    assert logits.shape == (2, 4) and not net.training
    pre = load_pretrained_model(pose_ckpt)
    assert torch.equal(pre.pose_gen.encoder.layers[0][0].weight, ckpt.load(pose_ckpt)["model"]["pose_gen.encoder.layers.0.0.weight"])


def test_checkpoint_that_does_not_fit_the_variant_is_refused(train_store, pose_ckpt, tmp_path):
    base = FT_FAST + ("epochs=1",)
    cfg = load_config(FinetuneConfig, TINY_FINETUNE, base + ("variant=fi",))
    with pytest.raises(ckpt.CheckpointError, match=r"does not fit variant 'fi': it has no trained weights for "
                                                    r"\['vnet', 'head_v', 'motion_align', 'integration'\]"):
        finetune(cfg, train_store, tmp_path / "a", pretrained=pose_ckpt)
    cfg = load_config(FinetuneConfig, TINY_FINETUNE, base + ("variant=fs", "model.backbone=r2plus1d_18"))
    with pytest.raises(ckpt.CheckpointError, match="pretrained with backbone 'r3d_18' but the fine-tuning config"):
        finetune(cfg, train_store, tmp_path / "b", pretrained=pose_ckpt)
    cfg = load_config(FinetuneConfig, TINY_FINETUNE, base + ("variant=scratch",))
    with pytest.raises(ConfigError, match="do not pass --pretrained"):
        finetune(cfg, train_store, tmp_path / "c", pretrained=pose_ckpt)
    cfg = load_config(FinetuneConfig, TINY_FINETUNE, base + ("variant=fd",))
    with pytest.raises(ConfigError, match="needs --pretrained"):
        finetune(cfg, train_store, tmp_path / "d")
    # a fine-tuning checkpoint is not a pretraining checkpoint
    bogus = tmp_path / "bogus.pt"
    torch.save({"weights": torch.zeros(1)}, bogus)
    with pytest.raises(ckpt.CheckpointError, match="not a csvr-checkpoint/1 checkpoint"):
        finetune(load_config(FinetuneConfig, TINY_FINETUNE, base + ("variant=fd",)), train_store, tmp_path / "e",
                 pretrained=bogus)


def test_allow_random_lets_fi_start_integration_from_scratch(train_store, pose_ckpt, tmp_path):
    """Table I's f_i without the video branch: explicitly allowed random groups are accepted."""
    cfg = load_config(FinetuneConfig, TINY_FINETUNE, FT_FAST + (
        "variant=fi", "epochs=1", "steps_per_epoch=1", "max_eval_videos=2",
        "allow_random=[vnet, head_v, motion_align, integration]"))
    result = finetune(cfg, train_store, tmp_path / "f", pretrained=pose_ckpt)
    saved = (tmp_path / "f" / "config.yaml").read_text()
    assert "loaded_groups:\n  - pose_gen" in saved
    assert 0.0 <= result["last_top1"] <= 1.0


def test_finetune_run_folder_holds_no_test_selected_checkpoint(train_store, pose_ckpt, tmp_path):
    """No checkpoint is chosen by the test top-1: the run folder holds last.pt only, result.json gives
    last_top1 only, and the per-epoch test top-1 is logged as a curve (acc/top1), nothing more."""
    cfg = load_config(FinetuneConfig, TINY_FINETUNE, FT_FAST + ("variant=fd", "epochs=2", "steps_per_epoch=1",
                                                                "max_eval_videos=2"))
    result = finetune(cfg, train_store, tmp_path / "ft", pretrained=pose_ckpt)
    run = tmp_path / "ft"
    assert not (run / "checkpoints" / "best.pt").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]
    assert not list(run.rglob("best*"))
    saved = json.loads((run / "result.json").read_text())
    assert "best_top1" not in saved and saved["last_top1"] == pytest.approx(result["last_top1"])
    evals = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e["stage"] == "eval"]
    assert len(evals) == 2 and all("acc/top1" in e and "best_top1" not in e for e in evals)


def test_finetune_cli_reports_bad_variant_use(train_store, pose_ckpt, tmp_path):
    from click.testing import CliRunner

    from csvr.train.cli import finetune as cli

    args = ["--config", str(TINY_FINETUNE), "--store", str(train_store), "--run-dir", str(tmp_path / "r")]
    result = CliRunner().invoke(cli, args + ["--variant", "scratch", "--pretrained", str(pose_ckpt)])
    assert result.exit_code == 1 and "variant 'scratch' trains from random initialisation" in result.output
    result = CliRunner().invoke(cli, args + ["--variant", "fs", "--pretrained", str(pose_ckpt)])
    assert result.exit_code == 1 and "does not fit variant 'fs'" in result.output and "['vnet']" in result.output


def test_finetune_resume_after_kill_matches_uninterrupted(train_store, pose_ckpt, tmp_path):
    over = FT_FAST + ("variant=fd", "epochs=3", "run.deterministic=true", "max_eval_videos=2")
    full = finetune(load_config(FinetuneConfig, TINY_FINETUNE, over), train_store, tmp_path / "full",
                    pretrained=pose_ckpt)

    def kill(epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        finetune(load_config(FinetuneConfig, TINY_FINETUNE, over), train_store, tmp_path / "resumed",
                 pretrained=pose_ckpt, epoch_hook=kill)
    with pytest.raises(FileExistsError, match="--resume"):
        finetune(load_config(FinetuneConfig, TINY_FINETUNE, over), train_store, tmp_path / "resumed",
                 pretrained=pose_ckpt)
    # a last.pt written before best.pt was dropped holds "best_top1" in its progress: resuming ignores it
    old = ckpt.load(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert "best_top1" not in old["progress"]
    old["progress"]["best_top1"] = 0.5
    ckpt.save_atomic(old, tmp_path / "resumed" / "checkpoints" / "last.pt")
    resumed = finetune(load_config(FinetuneConfig, TINY_FINETUNE, over), train_store, tmp_path / "resumed",
                       pretrained=pose_ckpt, resume=True)
    assert resumed["last_top1"] == full["last_top1"]
    assert not (tmp_path / "resumed" / "checkpoints" / "best.pt").exists()
    a = ckpt.load(tmp_path / "full" / "checkpoints" / "last.pt")["model"]
    b = ckpt.load(tmp_path / "resumed" / "checkpoints" / "last.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
