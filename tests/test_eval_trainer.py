"""`csvr evaluate run` and `csvr ablate run` end to end on run folders made by the real trainer
(a few steps on the `synthetic_store` fixture), plus the checkpoint helpers on hand-made checkpoints."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import h5py
import pytest
import torch
from click.testing import CliRunner

from csvr.evaluate.ablation import run_ablation
from csvr.evaluate.checkpoints import finetune_checkpoint, merge_stage_checkpoints, pretrain_checkpoint, valid_groups
from csvr.evaluate.cli import ablate, evaluate
from csvr.evaluate.metrics_io import load_metrics

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
# configs/*/tiny.yaml shrunk further so that the whole module runs in well under a minute
SMALL = ("batch_size=2", "data.frames=4", "data.future_frames=4", "data.crop=96", "data.input_size=32", "data.num_workers=0",
         "data.max_iframes=2", "model.video_size=16", "model.embed_dim=16", "model.noise_dim=4",
         "model.options.head_hidden=16", "model.options.pose_hidden=8", "model.options.gen_channels=16",
         "model.options.disc_width=4", "run.threads=1", "run.image_every=0", "run.tensorboard=false")
PRE_STEPS = ("stages.pose.steps=2", "stages.video.steps=1", "stages.context.steps=2", "stages.joint.steps=1")
FT = ("batch_size=2", "data.frames=4", "data.crop=96", "data.input_size=32", "data.num_workers=0", "model.embed_dim=16",
      "model.options.head_hidden=16", "model.options.pose_hidden=8", "epochs=1", "steps_per_epoch=2",
      "max_eval_videos=2", "run.threads=1", "run.tensorboard=false")


@pytest.fixture(scope="module")
def runs(synthetic_store, tmp_path_factory) -> dict[str, Path]:
    """A staged pretraining run (all four stages) and a fine-tuning run (variant fi) on the store."""
    from csvr.train.config import FinetuneConfig, PretrainConfig, load_config
    from csvr.train.finetune import finetune
    from csvr.train.pretrain import pretrain

    base = tmp_path_factory.mktemp("eval_runs")
    cfg = load_config(PretrainConfig, REPO / "configs/pretrain/tiny.yaml", SMALL + PRE_STEPS)
    pretrain(cfg, synthetic_store, base / "pretrain")
    fcfg = load_config(FinetuneConfig, REPO / "configs/finetune/tiny.yaml", FT)
    finetune(fcfg, synthetic_store, base / "finetune", pretrained=base / "pretrain/checkpoints/final.pt")
    return {"pretrain": base / "pretrain", "finetune": base / "finetune", "base": base}


@pytest.mark.slow
def test_evaluate_run_end_to_end(runs, synthetic_store, synthetic_root):
    out = runs["base"] / "eval"
    res = CliRunner().invoke(evaluate, ["run", "--store", str(synthetic_store), "--pretrain-run", str(runs["pretrain"]),
                                        "--finetune-run", str(runs["finetune"]), "--out", str(out), "--num-clips", "2",
                                        "--groups", str(synthetic_root / "synthetic.json")])
    assert res.exit_code == 0, res.output
    m = load_metrics(out / "metrics.json")
    rec = m["recognition"]
    assert rec["num_videos"] == 8 and rec["num_clips"] == 16 and rec["clips_per_video"] == 2
    assert 0.0 <= rec["clip_top1"] <= 1.0 and 0.0 <= rec["video_top1"] <= 1.0
    assert len(rec["per_class"]) == 4 and sum(map(sum, rec["confusion_matrix"])) == 8
    assert set(m["class_groups"].values()) <= {"motion", "context", "both"}
    r = m["retrieval"]["recall"]
    assert 0.0 <= r["1"] <= r["5"] <= r["10"] <= r["20"] == 1.0  # 8 gallery videos: k clipped, always a hit
    p = m["pretext"]
    assert 0.0 <= p["context_top1"] <= 1.0 and p["pose_mse_x100"] >= 0.0
    gen = p["generation"]
    assert 1.0 <= gen["inception_score"] <= 4.0 + 1e-6 and 1.0 <= gen["inception_score_real"] <= 4.0 + 1e-6
    assert {"psnr", "ssim", "psnr_future", "ssim_future"} <= set(gen)
    assert m["run"]["backbone"] == "r3d_18" and m["run"]["finetune_checkpoint"].endswith("last.pt")
    assert not (runs["finetune"] / "checkpoints" / "best.pt").exists()  # nothing selected on the test split
    with h5py.File(out / "eval" / "features.h5") as f:
        # pooled V-Network features: 512 channels at width 1, 128 at the tiny configs' width 0.25
        assert f["train/features"].shape == (8, 128) and f["test/features"].shape == (8, 128)
    for png in ("per_class_accuracy", "confusion_matrix", "curves_logs_pretrain_log", "curves_logs_finetune_log",
                "retrieval_examples", "pose_prediction_0", "frames_0"):
        assert (out / "plots" / f"{png}.png").stat().st_size > 1000, png
    text = (out / "report.md").read_text()
    for heading in ("## Action recognition", "## Video retrieval", "## Pretext tasks", "## Training curves"):
        assert heading in text
    assert (f"Fine-tuned model: `{m['run']['finetune_checkpoint']}` (the last epoch; no checkpoint is selected "
            "on the test split).") in text
    # every loss term of both runs has a panel: the copied logs are what the report plots
    assert (out / "logs" / "pretrain" / "log.jsonl").read_text() == (runs["pretrain"] / "log.jsonl").read_text()


@pytest.mark.slow
def test_ablate_run_table_i_reuses_one_pretraining(runs, synthetic_store, tmp_path):
    out = tmp_path / "ablation"
    args = ["run", "--store", str(synthetic_store), "--config", "tiny", "--finetune-config", "tiny",
            "--tables", "I", "--out", str(out), "--pretrain-run", str(runs["pretrain"]), "--num-clips", "2"]
    for o in FT:
        args += ["--set-finetune", o]
    res = CliRunner().invoke(ablate, args)
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())["I"]
    assert set(results) == {"scratch", "f_d", "f_s", "f_i_adain", "f_i_concat", "full"}
    for row, vals in results.items():
        assert set(vals) == {"synthetic clip", "synthetic video"} and all(0 <= v <= 1 for v in vals.values()), row
    assert not (out / "pretrain").exists()  # the given run was reused, nothing pretrained again
    # which checkpoint each row fine-tuned from
    ev = {k: json.loads((out / k / "eval.json").read_text()) for k in results}
    assert ev["scratch"]["pretrained"] is None and ev["scratch"]["variant"] == "scratch"
    assert ev["f_d"]["pretrained"] == str(runs["pretrain"] / "checkpoints/pose/final.pt")
    assert ev["f_s"]["pretrained"] == str(runs["pretrain"] / "checkpoints/context/final.pt")
    assert ev["full"]["pretrained"] == str(runs["pretrain"] / "checkpoints/joint/final.pt")
    merged = out / "f_i_adain" / "pretrained.pt"
    assert ev["f_i_adain"]["pretrained"] == str(merged) and "allow_random=[\"integration\", \"motion_align\"]" in ev["f_i_adain"]["overrides"]
    assert set(valid_groups(merged)) == {"pose_gen", "pose_disc", "vnet", "inet", "head_v", "head_i"}
    assert ev["f_i_concat"]["variant"] == "concat"
    md = (out / "ablation.md").read_text()
    assert "ours synthetic clip" in md and "ours synthetic video" in md and "90.4" in md
    # a second run resumes: every row is already in results.json, nothing is trained again
    again = CliRunner().invoke(ablate, args)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "results.json").read_text())["I"] == results


def test_merge_stage_checkpoints_takes_each_stage_groups(tmp_path):
    from csvr.train.checkpoint import CheckpointError, load, save_atomic

    def ck(stage: str, groups: list[str], fill: float, **extra) -> Path:
        model = {f"{g}.w": torch.full((2,), fill) for g in ("vnet", "pose_gen", "integration")}
        obj = {"format": "csvr-checkpoint/1", "kind": "pretrain-stage", "model": model, "progress": {"stage": stage},
               "config": {"data": {"frames": 8}}, "trained_groups": groups, "valid_groups": groups,
               "model_config": {"backbone": "r3d_18", "pose_layers": 6, "options": {}}, **extra}
        return save_atomic(obj, tmp_path / stage / "final.pt")

    pose, context = ck("pose", ["pose_gen"], 1.0), ck("context", ["vnet"], 2.0)
    out = merge_stage_checkpoints([pose, context], tmp_path / "m.pt", model_options={"feature_layer": 2})
    m = load(out)
    assert m["valid_groups"] == ["pose_gen", "vnet"] and m["kind"] == "pretrain-stage"
    assert float(m["model"]["pose_gen.w"][0]) == 1.0 and float(m["model"]["vnet.w"][0]) == 2.0
    assert m["model_config"]["options"] == {"feature_layer": 2} and m["progress"]["stage"] == "pose+context"
    other = ck("joint", ["vnet"], 3.0, model_config={"backbone": "c3d"})
    with pytest.raises(CheckpointError, match="model_config differs"):
        merge_stage_checkpoints([pose, other], tmp_path / "bad.pt")


def test_checkpoint_lookup_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoints/final.pt: no final checkpoint"):
        pretrain_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"stage 'pose'"):
        pretrain_checkpoint(tmp_path, "pose")
    with pytest.raises(ValueError, match="unknown pretraining stage"):
        pretrain_checkpoint(tmp_path, "warmup")
    with pytest.raises(FileNotFoundError, match="last.pt: no fine-tuning checkpoint"):
        finetune_checkpoint(tmp_path)
    # only the last epoch: there is no way to ask for a checkpoint chosen by its test top-1
    assert list(inspect.signature(finetune_checkpoint).parameters) == ["run"]
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.pt").write_bytes(b"x")  # left by an older trainer: never used
    with pytest.raises(FileNotFoundError, match="last.pt: no fine-tuning checkpoint"):
        finetune_checkpoint(tmp_path)
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"x")
    assert finetune_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last.pt"
    assert "--checkpoint" not in CliRunner().invoke(evaluate, ["run", "--help"]).output


def test_run_ablation_stores_named_columns_and_resumes(tmp_path):
    calls = []

    def run_row(row, row_dir):
        calls.append(row.key)
        return {"clip": 0.5, "video": 0.75}

    res = run_ablation(["I", "V"], tmp_path, "synthetic", run_row)
    assert res["results"]["I"]["full"] == {"synthetic clip": 0.5, "synthetic video": 0.75}
    assert res["results"]["V"]["both"] == res["results"]["I"]["full"]
    assert len(calls) == 8  # 6 rows of Table I + recon + pred (Table V "both" = Table I "full")
    run_ablation(["I", "V"], tmp_path, "synthetic", run_row)
    assert len(calls) == 8  # resumed: nothing ran again
    assert "ours synthetic clip" in (tmp_path / "ablation.md").read_text()
