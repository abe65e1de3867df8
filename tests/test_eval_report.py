"""Report builder, ablation tables, evaluation pipeline and CLI on tiny hand-made run folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from csvr.evaluate import paper
from csvr.evaluate.ablation import run_ablation, select_rows
from csvr.evaluate.cli import ablate, evaluate
from csvr.evaluate.pipeline import EvalComponents, evaluate_run, pretext_metrics, recognition_metrics
from csvr.evaluate.markdown import ablation_markdown
from csvr.evaluate.metrics_io import load_metrics
from csvr.evaluate.report import build_report
from csvr.evaluate.training_log import read_jsonl_log

torch.set_num_threads(1)

CLASSES = ["wave", "clap", "squat", "walk_park", "walk_beach", "kick_ball"]
GROUPS = {"wave": "motion", "clap": "motion", "squat": "motion", "walk_park": "context",
          "walk_beach": "context", "kick_ball": "both"}


def _frames(n: int, colour: tuple[int, int, int], size: int = 24) -> np.ndarray:
    """n tiny frames: a coloured square moving right on grey."""
    out = np.full((n, size, size, 3), 90, np.uint8)
    for t in range(n):
        x = 2 + (t * 3) % (size - 10)
        out[t, 8:16, x:x + 8] = colour
    return out


def _skeleton(t: int, shift: float = 0.0) -> np.ndarray:
    """A stick figure (17 COCO joints) raising its right arm over time."""
    j = np.zeros((17, 2))
    j[0] = [0.5, 0.2]
    j[1:5] = [[0.48, 0.18], [0.52, 0.18], [0.46, 0.2], [0.54, 0.2]]
    j[5], j[6] = [0.42, 0.32], [0.58, 0.32]
    j[7], j[8] = [0.38, 0.45], [0.64, 0.42 - 0.02 * t]
    j[9], j[10] = [0.36, 0.58], [0.66, 0.52 - 0.05 * t]
    j[11], j[12] = [0.45, 0.6], [0.55, 0.6]
    j[13], j[14] = [0.44, 0.78], [0.56, 0.78]
    j[15], j[16] = [0.44, 0.95], [0.56, 0.95]
    return j + shift


def make_run_folder(root: Path) -> Path:
    """A run folder with a pretraining log, metrics.json and examples, like `evaluate_run` writes."""
    run = root / "run"
    run.mkdir(parents=True)
    lines = []
    for stage, n, base in (("pose", 30, 2.0), ("context", 30, 4.0), ("joint", 40, 6.0)):
        for step in range(n):
            rec = {"step": step, "stage": stage, "epoch": step // 10, "lr": 0.008 * (1 - step / (2 * n)),
                   "samples_per_s": 20 + step % 3, "data_wait_frac": 0.05, "time": 1e9 + step}
            if stage in ("pose", "joint"):
                rec["loss/pose_l2"] = base * math.exp(-step / 10) + 0.1
                rec["loss/pose_adv"] = 0.5 + 0.1 * math.sin(step)
            if stage in ("context", "joint"):
                rec["loss/context"] = base * math.exp(-step / 15) + 0.5
            if stage == "joint":
                rec["loss/video_r"] = 1.0 / (1 + step)
                rec["grad_norm/v_network"] = 1.5
            lines.append(json.dumps(rec))
    rec45 = json.loads(lines[45])
    rec45["loss/context"] = "nan"  # a non-finite value, written as a string like the trainer does
    lines[45] = json.dumps(rec45)
    lines.append('{"step": 40, "stage": "joint", "loss/con')  # killed mid-write
    (run / "log.jsonl").write_text("\n".join(lines) + "\n")

    rng = np.random.default_rng(0)
    per_class = [1.0, 0.5, 0.75, 0.25, None, 1.0]
    metrics = {
        "run": {"name": "tiny", "backbone": "r2plus1d_18", "dataset": "ucf101",
                "finetune_checkpoint": "runs/ft/checkpoints/last.pt"},
        "classes": CLASSES,
        "class_groups": GROUPS,
        "recognition": {"clip_top1": 0.61, "video_top1": 0.7, "num_clips": 120, "num_videos": 12,
                        "per_class": per_class, "confusion_matrix": np.diag([2, 1, 2, 1, 0, 2]).tolist()},
        "per_class_variants": {"f_d": [0.9, 0.8, 0.7, 0.1, 0.2, 0.5], "f_s": [0.3, 0.2, 0.4, 0.9, 0.8, 0.6]},
        "retrieval": {"recall": {"1": 0.25, "5": 0.5, "10": 0.75, "20": 1.0}, "num_queries": 12, "num_gallery": 24},
        "pretext": {"context_top1": 0.4, "pose_mse_x100": 3.25,
                    "generation": {"inception_score": 2.5, "inception_score_real": 4.0, "psnr": 18.5, "ssim": 0.61}},
        "ablation": {"I": {"scratch": {"synthetic": 0.5}, "full": {"synthetic": 0.8125}}},
    }
    (run / "metrics.json").write_text(json.dumps({"schema": "csvr-metrics/1", **metrics}))

    colours = [(230, 60, 60), (60, 200, 60), (60, 60, 230), (230, 200, 40)]
    ev = run / "eval"
    ev.mkdir()
    np.savez_compressed(
        ev / "examples.npz",
        retrieval_query_frames=np.stack([_frames(1, c)[0] for c in colours[:2]]),
        retrieval_neighbour_frames=np.stack([np.stack([_frames(1, c)[0] for c in colours[:3]])] * 2),
        retrieval_query_labels=np.array([0, 1]),
        retrieval_neighbour_labels=np.array([[0, 1, 2], [0, 1, 1]]),
        retrieval_neighbour_sims=rng.random((2, 3)),
        pose_observed=np.stack([[_skeleton(t) for t in range(8)]]),
        pose_future_real=np.stack([[_skeleton(t) for t in range(8, 16)]]),
        pose_future_generated=np.stack([[_skeleton(t, 0.02) for t in range(8, 16)]]),
        pose_future_mask=np.ones((1, 8, 17), bool),
        frames_real=_frames(8, colours[0])[None] / 255.0,
        frames_reconstructed=np.clip(_frames(8, colours[0])[None] / 255.0 + rng.normal(0, 0.05, (1, 8, 24, 24, 3)), 0, 1),
    )
    return run


def test_build_report_writes_tables_and_plots(tmp_path, caplog):
    run = make_run_folder(tmp_path)
    written = build_report(run)
    report = (run / "report.md").read_text()
    for key in ("report", "per_class_accuracy", "confusion_matrix", "curves_log", "stats_log",
                "retrieval_examples", "pose_prediction_0", "frames_0"):
        assert key in written, key
        assert written[key].is_file() and written[key].stat().st_size > 0
    for png in (p for p in written.values() if p.suffix == ".png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png.relative_to(run).as_posix()})" in report  # every plot is linked
    # recognition table
    assert "| 61.0 | 70.0 | 12 | 120 |" in report
    # the recognition section names the fine-tuning checkpoint it scored (never one picked on the test split)
    assert ("Fine-tuned model: `runs/ft/checkpoints/last.pt` (the last epoch; no checkpoint is selected on the "
            "test split).") in report
    # per-class table grouped, with group means (motion mean of 100, 50, 75 = 75.0)
    assert "| wave | motion | 100.0 | 90.0 | 30.0 |" in report
    assert "| walk_beach | context | – | 20.0 | 80.0 |" in report
    assert "| **mean motion** | motion | **75.0** |" in report
    # retrieval beside the paper's Table VIII (r2plus1d_18 on ucf101)
    assert "| ours | 25.0 | 50.0 | 75.0 | 100.0 |" in report
    assert "| paper (CSVR r2plus1d_18, K400-pretrained) | 64.4 | 80.2 | 87.8 | 93.1 |" in report
    # pretext vs Table II
    assert "| pose prediction MSE ×100 ↓ | 3.25 | 2.9 |" in report
    assert "| video generation IS ↑ (our classifier) | 2.50 | 15.1 |" in report
    # ablation table with paper numbers
    assert "| Training from scratch | 50.0 | 65.0 | 32.5 |" in report
    assert "| f_i (full CSVR) | 81.2 | 90.4 | 56.6 |" in report
    assert "| f_d (pose prediction branch) | – | 75.1 | 38.4 |" in report
    assert "truncated last line" in caplog.text
    assert load_metrics(run / "metrics.json")["recognition"]["video_top1"] == 0.7


def test_build_report_log_only_and_errors(tmp_path):
    run = tmp_path / "pre"
    (run / "sub").mkdir(parents=True)
    (run / "sub" / "log.jsonl").write_text('{"step": 0, "stage": "pose", "loss/pose_l2": 1.0}\n'
                                           '{"step": 1, "stage": "pose", "loss/pose_l2": 0.5}\n')
    written = build_report(run)
    assert set(written) == {"report", "curves_sub_log"}
    assert "Training curves" in written["report"].read_text()
    (run / "sub" / "log.jsonl").write_text('{"step": 0, "stage": "pose"}\nnot json\n{"step": 2, "stage": "pose"}\n')
    with pytest.raises(ValueError, match=r"log.jsonl:2: not valid JSON"):
        build_report(run)
    (run / "sub" / "log.jsonl").write_text('{"stage": "pose"}\n')
    with pytest.raises(ValueError, match=r"log.jsonl:1: missing or non-integer 'step'"):
        read_jsonl_log(run / "sub" / "log.jsonl")
    (run / "metrics.json").write_text('{"schema": "other"}')
    (run / "sub" / "log.jsonl").unlink()
    with pytest.raises(ValueError, match="not a csvr-metrics/1 metrics file"):
        build_report(run)
    with pytest.raises(FileNotFoundError):
        build_report(tmp_path / "nope")


def test_ablation_markdown_exact():
    text = ablation_markdown("IV", {"mi_infonce": {"synthetic": 0.4}, "l2": {"synthetic": 0.3}})
    lines = text.splitlines()
    assert lines[0] == "**Table IV: f_s with different contrastive losses** (top-1 %)"
    assert lines[2] == "| Row | ours synthetic | paper ucf101 | paper hmdb51 |"
    assert lines[4] == "| L2 loss | 30.0 | 70.2 | 33.4 |"
    assert lines[5] == "| InfoNCE (one random positive, Eq. 10) | – | 72.5 | 40.2 |"
    assert lines[6] == "| MI-InfoNCE | 40.0 | 73.1 | 40.2 |"
    with pytest.raises(ValueError, match="unknown row keys"):
        ablation_markdown("I", {"nonsense": {"x": 1.0}})
    with pytest.raises(KeyError, match="unknown ablation table"):
        ablation_markdown("IX", {})
    assert "Note:" in ablation_markdown("I", {})


def test_run_ablation_dedupes_and_resumes(tmp_path):
    calls = []

    def run_row(row, row_dir):
        calls.append(row.key)
        return {"scratch": 0.25, "f_d": 0.5, "f_s": 0.5, "f_i_adain": 0.6, "f_i_concat": 0.55,
                "full": 0.75, "l2": 0.4, "infonce": 0.45}[row.key]

    res = run_ablation(["I", "iv"], tmp_path / "abl", "synthetic", run_row)
    # Table IV mi_infonce is the same configuration as Table I f_s: run once
    assert calls == ["scratch", "f_d", "f_s", "f_i_adain", "f_i_concat", "full", "l2", "infonce"]
    assert res["results"]["IV"]["mi_infonce"] == {"synthetic": 0.5}
    md = res["markdown"].read_text()
    assert "| f_i (full CSVR) | 75.0 | 90.4 | 56.6 |" in md and "| MI-InfoNCE | 50.0 | 73.1 | 40.2 |" in md
    calls.clear()
    run_ablation(["I", "IV"], tmp_path / "abl", "synthetic", run_row)
    assert calls == []  # resumed: everything already done
    with pytest.raises(KeyError, match="unknown ablation table"):
        run_ablation(["VI"], tmp_path / "abl2", "synthetic", run_row)
    # the CLI prints the same table from results.json
    out = CliRunner().invoke(ablate, ["table", str(res["results_path"])])
    assert out.exit_code == 0, out.output
    assert "| Training from scratch | 25.0 | 65.0 | 32.5 |" in out.output


def test_select_rows_runs_only_the_named_rows(tmp_path):
    calls = []

    def run_row(row, row_dir):
        calls.append(row.key)
        return 0.5

    assert select_rows(["I", "IV"], "scratch, full,l2") == {"I": ["scratch", "full"], "IV": ["l2"]}
    res = run_ablation(["I"], tmp_path / "abl", "synthetic", run_row, rows=select_rows(["I"], "full,scratch"))
    assert calls == ["scratch", "full"] and set(res["results"]["I"]) == {"scratch", "full"}
    with pytest.raises(ValueError, match=r"unknown ablation row\(s\) recon for table\(s\) I; rows: scratch, f_d"):
        select_rows(["I"], "scratch,recon")


def test_paper_tables_are_consistent():
    for table, rows in paper.ABLATION_TABLES.items():
        assert len({r.key for r in rows}) == len(rows)
        assert all(0 < v < 100 for r in rows for v in r.paper.values())
    assert [r.paper["ucf101"] for r in paper.TABLE_I] == [65.0, 75.1, 73.1, 81.0, 75.2, 90.4]
    assert len(paper.TABLE_II_EPOCHS) == len(paper.TABLE_II["context_top1"]) == 6


def test_evaluate_run_end_to_end_with_fake_model(tmp_path):
    """The pipeline with toy callables: features = mean colour of the clip (separates the classes)."""
    colours = {0: (230, 60, 60), 1: (60, 200, 60), 2: (60, 60, 230)}
    classes = ["red", "green", "blue"]

    def batches(split: str):
        vids = range(6) if split == "train" else range(6, 9)
        def gen():
            clips, labels, vidx = [], [], []
            for v in vids:
                lab = v % 3
                for _ in range(2):
                    clips.append(torch.from_numpy(_frames(4, colours[lab])).float() / 255)
                    labels.append(lab)
                    vidx.append(v)
            yield {"clip": torch.stack(clips), "label": torch.tensor(labels), "video_index": torch.tensor(vidx)}
        return gen

    feats = lambda b: b["clip"].amax(dim=(1, 2, 3))  # noqa: E731  (B, 3): the brightest colour of the clip
    classify = lambda b: feats(b) * 10  # noqa: E731  logits: channel order == class order

    def pretext(batch):
        b = len(batch["label"])
        emb = feats(batch)
        pose = torch.zeros(b, 4, 17, 2)
        return {"video_emb": emb, "iframe_emb": emb + 0.01, "pose_pred": pose + 0.1, "pose_target": pose,
                "pose_mask": torch.ones(b, 4, 17, dtype=torch.bool), "pose_observed": pose,
                "real": batch["clip"][:, :, :16, :16], "reconstructed": batch["clip"][:, :, :16, :16] * 0.9,
                "generated_logits": classify(batch), "real_logits": classify(batch)}

    calls = {"test": 0}
    test_gen = batches("test")

    def test_batches():
        calls["test"] += 1
        return test_gen()

    comps = EvalComponents(test_batches=test_batches, train_batches=batches("train"), classify=classify,
                           features=feats, pretext=pretext,
                           video_frame=lambda split, v: _frames(1, colours[v % 3])[0], attrs={"model": "toy"})
    written = evaluate_run(tmp_path / "out", comps, classes, {"red": "motion", "green": "context", "blue": "both"},
                           run_info={"backbone": "toy"})
    m = load_metrics(written["metrics"])
    assert calls["test"] == 1  # one pass over the test split for every metric
    assert m["recognition"]["clip_top1"] == 1.0 and m["recognition"]["video_top1"] == 1.0
    assert m["recognition"]["num_videos"] == 3 and m["recognition"]["clips_per_video"] == 2
    assert m["retrieval"]["recall"] == {"1": 1.0, "5": 1.0, "10": 1.0, "20": 1.0}
    assert m["retrieval"]["num_gallery"] == 6
    assert m["pretext"]["context_top1"] == 1.0
    assert m["pretext"]["pose_mse_x100"] == pytest.approx(1.0)  # 100 * 0.1^2
    assert m["pretext"]["generation"]["inception_score"] == pytest.approx(m["pretext"]["generation"]["inception_score_real"])
    assert 1.0 < m["pretext"]["generation"]["inception_score"] <= 3.0
    assert (tmp_path / "out" / "eval" / "features.h5").is_file()
    assert written["retrieval_examples"].is_file() and written["report"].is_file()
    # the retrieval CLI reads the stored features and reproduces the numbers
    out = CliRunner().invoke(evaluate, ["retrieval", str(written["features"]), "--json", str(tmp_path / "r.json")])
    assert out.exit_code == 0, out.output
    assert "R@1   100.00%" in out.output
    assert json.loads((tmp_path / "r.json").read_text())["attrs"]["model"] == "toy"


def test_recognition_and_pretext_sections():
    scores = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    sec = recognition_metrics(scores, [0, 0, 1, 1], [0, 0, 1, 1], 2)
    assert sec["clip_top1"] == 0.5 and sec["video_top1"] == 1.0
    assert sec["confusion_matrix"] == [[1, 0], [0, 1]] and sec["per_class"] == [1.0, 1.0]
    with pytest.raises(ValueError, match="outputs 2 classes, dataset has 3"):
        recognition_metrics(scores, [0, 0, 1, 1], [0, 0, 1, 1], 3)
    assert pretext_metrics([]) == {}


def test_cli_report_and_errors(tmp_path):
    run = make_run_folder(tmp_path)
    groups = tmp_path / "synthetic.json"
    groups.write_text(json.dumps({"classes": CLASSES, "groups": GROUPS}))
    out = CliRunner().invoke(evaluate, ["report", str(run), "--groups", str(groups), "--out", str(tmp_path / "rep")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "rep" / "report.md").is_file() and (tmp_path / "rep" / "metrics.json").is_file()
    groups.write_text(json.dumps({"groups": {"wave": "dance"}}))
    out = CliRunner().invoke(evaluate, ["report", str(run), "--groups", str(groups)])
    assert out.exit_code != 0 and "unknown groups" in out.output
    out = CliRunner().invoke(evaluate, ["run", "--store", str(tmp_path), "--out", str(tmp_path / "o")])
    assert out.exit_code != 0 and "--pretrain-run" in out.output


def test_evaluate_run_pretrain_only_has_no_recognition(tmp_path):
    clips = torch.rand(4, 4, 16, 16, 3)
    batch = {"clip": clips, "label": torch.tensor([0, 0, 1, 1]), "video_index": torch.tensor([0, 0, 1, 1])}
    comps = EvalComponents(test_batches=lambda: [batch], train_batches=lambda: [batch],
                           features=lambda b: b["clip"].mean(dim=(1, 2, 3)))
    written = evaluate_run(tmp_path / "o", comps, ["a", "b"])
    m = load_metrics(written["metrics"])
    assert "recognition" not in m and "pretext" not in m
    assert m["retrieval"]["num_queries"] == 2 and m["retrieval"]["num_gallery"] == 2
    assert "## Video retrieval" in written["report"].read_text()
    with pytest.raises(KeyError, match="lacks key 'video_index'"):
        evaluate_run(tmp_path / "p", EvalComponents(test_batches=lambda: [{"clip": clips, "label": batch["label"]}],
                                                    features=lambda b: b["clip"]), ["a", "b"])


TRAINER_LOG = """\
{"step": 1, "stage": "pose", "epoch": 0, "loss/pose_d": -0.0032, "loss/pose_g": -0.076, "loss/pose_gp": 0.987, "loss/pose_l2": 12.62, "grad_norm/pose_gen": 57.6, "lr": 0.0019, "samples_per_s": 36.4, "data_wait_frac": 0.19, "step_s": 0.11, "time": 1795415829.43}
{"step": 2, "stage": "pose", "epoch": 0, "loss/pose_d": -0.0024, "loss/pose_g": -0.075, "loss/pose_gp": 0.986, "loss/pose_l2": 11.50, "grad_norm/pose_gen": 77.9, "lr": 0.0015, "samples_per_s": 98.2, "data_wait_frac": 0.57, "step_s": 0.04, "time": 1795415829.47}
{"step": 3, "stage": "pose", "event": "non_finite_loss", "term": "loss/pose_l2", "value": "nan", "time": 1795415829.73}
"""


def test_trainer_log_format_with_non_finite_event(tmp_path):
    """A log exactly as train.metrics_log writes it, ending with a non-finite-loss event."""
    from csvr.evaluate.training_log import log_series

    run = tmp_path / "r"
    run.mkdir()
    (run / "log.jsonl").write_text(TRAINER_LOG)
    series = log_series(read_jsonl_log(run / "log.jsonl"))
    steps, vals = series["loss/pose_l2"]["pose"]
    assert steps.tolist() == [1, 2, 3] and vals[:2].tolist() == [12.62, 11.50] and np.isnan(vals[2])
    assert "value" not in series and "term" not in series and "time" not in series
    written = build_report(run)
    assert {"curves_log", "stats_log", "report"} <= set(written)
