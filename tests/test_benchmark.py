"""`evaluate.benchmark`: the paired bootstrap, the verdicts, the protocols and the summary of row files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from csvr.evaluate.benchmark import PAPER_ORDER, Benchmark, benchmark_markdown, paired_interval, protocol_rows, verdict


def test_paired_interval_covers_a_known_difference_and_its_width_shrinks_with_videos():
    rng = np.random.default_rng(0)
    a = (rng.random((3, 300)) < 0.5).astype(int)
    b = a.copy()
    flip = rng.random(a.shape) < 0.2          # b gains on 20% of the videos a missed...
    b[(a == 0) & flip] = 1
    iv = paired_interval(a, b, rounds=2000)
    assert iv["diff"] == pytest.approx((b - a).mean())
    assert iv["lo"] < iv["diff"] < iv["hi"] and iv["lo"] > 0
    assert verdict(iv) == "holds" and verdict(paired_interval(b, a, rounds=2000)) == "reversed"
    small = paired_interval(a[:, :30], b[:, :30], rounds=2000)
    assert (small["hi"] - small["lo"]) > 2 * (iv["hi"] - iv["lo"])


def test_identical_rows_are_not_separated_and_shapes_are_checked():
    a = np.random.default_rng(1).integers(0, 2, (3, 50))
    rng = np.random.default_rng(2)
    b = np.where(rng.random(a.shape) < 0.5, a, 1 - a)  # half the videos flipped at random: no true difference
    assert verdict(paired_interval(a, b, rounds=2000)) == "not separated"
    with pytest.raises(ValueError, match="one shape"):
        paired_interval(a, b[:, :10])


def test_protocols_fine_tune_one_network_each():
    pose_rgb = {r.key: r.finetune_variant for r in protocol_rows("pose_rgb")}
    assert pose_rgb == {"scratch": "scratch", "f_d": "integrated", "f_s": "integrated", "f_i_adain": "integrated",
                        "f_i_concat": "concat", "full": "integrated"}
    assert {r.key: r.finetune_variant for r in protocol_rows("rgb")} == {
        "scratch": "scratch_rgb", "f_s": "video_only", "full": "video_only"}
    assert ("scratch", "full") in PAPER_ORDER


def _write_row(path, ids, correct):
    path.mkdir(parents=True)
    (path / "eval.json").write_text(json.dumps({"per_video": {"ids": list(ids), "correct": list(correct)}}))


def test_summary_reads_the_row_files_in_video_order(tmp_path):
    bench = Benchmark(store=tmp_path, out_dir=tmp_path / "b", seeds=[0, 1], pretrain_config=tmp_path,
                      finetune_config=tmp_path, protocols=("rgb",))
    ids = [5, 3, 9, 1]
    hits = {"scratch": [[0, 0, 1, 0], [0, 1, 0, 0]], "f_s": [[1, 0, 1, 0], [1, 1, 0, 0]],
            "full": [[1, 1, 1, 1], [1, 1, 1, 0]]}
    for key, per_seed in hits.items():
        for seed, h in enumerate(per_seed):
            _write_row(bench.row_dir(seed, "rgb", key), ids, h)
    s = bench.summary()["protocols"]["rgb"]
    assert s["num_test_videos"] == 4
    assert s["rows"]["scratch"]["per_seed"] == [25.0, 25.0] and s["rows"]["full"]["mean"] == pytest.approx(87.5)
    pair = next(p for p in s["pairs"] if (p["a"], p["b"]) == ("scratch", "full"))
    assert pair["diff"] == pytest.approx(62.5)
    assert "| scratch < full | +62.5 |" in benchmark_markdown({**bench.summary(), "machine": {}}, "csvr x")
    _write_row(bench.row_dir(0, "rgb", "f_s").parent / "other", [1, 2, 3, 4], [0, 0, 0, 0])
    (bench.row_dir(1, "rgb", "f_s") / "eval.json").write_text(json.dumps({"per_video": {"ids": [1, 2, 3, 4],
                                                                                          "correct": [0, 0, 0, 0]}}))
    with pytest.raises(ValueError, match="scored other test videos"):
        bench.summary()


def test_subsets_summarise_each_row_on_the_matching_videos_and_name_a_pattern_that_matches_none(tmp_path):
    import zarr

    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    g.attrs.update({"schema": "csvr-store/1", "complete": True})
    ids = g.create_array("videos/id", shape=(6,), dtype=str)
    ids[:] = np.array(["v_A_g01_c01", "v_A_g03_c01", "v_A_g02_c01", "v_B_g01_c01", "v_B_g04_c01", "v_B_g02_c02"],
                      dtype=object)
    bench = Benchmark(store=tmp_path / "s.zarr", out_dir=tmp_path / "b", seeds=[0, 1], pretrain_config=tmp_path,
                      finetune_config=tmp_path, protocols=("rgb",), subsets={"demo": "_g0[12]_"})
    rows = [0, 1, 2, 4, 5]  # video-table rows scored (row 3 not in this test split)
    for key in ("scratch", "f_s", "full"):
        for seed, h in enumerate([[1, 1, 0, 1, 0], [0, 0, 1, 1, 1]]):
            _write_row(bench.row_dir(seed, "rgb", key), rows, h)
    s = bench.summary()["protocols"]["rgb"]
    assert s["subsets"] == {"demo": {"pattern": "_g0[12]_", "num_videos": 3}}  # rows 0, 2, 5
    demo = s["rows"]["full"]["subsets"]["demo"]
    assert demo["per_seed"] == pytest.approx([100 / 3, 200 / 3]) and demo["mean"] == pytest.approx(50.0)
    assert s["rows"]["full"]["per_seed"] == [60.0, 60.0]
    text = benchmark_markdown({**bench.summary(), "machine": {}}, "csvr x")
    assert "| scratch | demo | paper (UCF101) |" not in text and "| demo | paper (UCF101) |" in text
    assert "| 60.0 | 0.0 | [60.0, 60.0] | 50.0 [33.3, 66.7] |" in text
    bench.subsets = {"none": "_g09_"}
    with pytest.raises(ValueError, match="subset 'none': no scored test video .* matching '_g09_'"):
        bench.summary()


SMALL = ("batch_size=2", "data.frames=4", "data.future_frames=4", "data.crop=96", "data.input_size=32",
         "data.num_workers=0", "data.max_iframes=2", "model.video_size=16", "model.embed_dim=16", "model.noise_dim=4",
         "model.options.head_hidden=16", "model.options.pose_hidden=8", "model.options.gen_channels=16",
         "model.options.disc_width=4", "run.threads=1", "run.image_every=0", "run.tensorboard=false",
         "stages.pose.steps=2", "stages.context.steps=2", "stages.video.steps=1", "stages.joint.steps=1")
FT = ("batch_size=2", "data.frames=4", "data.crop=96", "data.input_size=32", "data.num_workers=0", "model.embed_dim=16",
      "model.options.head_hidden=16", "model.options.pose_hidden=8", "epochs=1", "steps_per_epoch=2",
      "max_eval_videos=2", "run.threads=1", "run.tensorboard=false")


def test_benchmark_runs_every_row_of_both_protocols_and_resumes(synthetic_store, tmp_path):
    from csvr.evaluate.ablation_runner import ablation_finetune_config, resolve_config

    lines: list[str] = []
    bench = Benchmark(store=synthetic_store, out_dir=tmp_path / "b", seeds=[0], num_clips=1,
                      pretrain_config=resolve_config("pretrain", "tiny"), finetune_config=ablation_finetune_config("tiny"),
                      pretrain_overrides=SMALL, finetune_overrides=FT, device="cpu", num_workers=0, echo=lines.append)
    summary = bench.run()
    assert "9 to run" in lines[0] and lines[-1].startswith("[9/9] seed 0 rgb full") and "ETA 0 s" in lines[-1]
    for protocol, keys in (("pose_rgb", 6), ("rgb", 3)):
        p = summary["protocols"][protocol]
        assert len(p["rows"]) == keys and p["num_test_videos"] == 8  # every test video of the 4-class store
        assert all(0 <= r["mean"] <= 100 for r in p["rows"].values())
    # the one-network protocols: every pose+RGB row fine-tuned the fi network (or concat), random where untrained
    fd = json.loads((bench.row_dir(0, "pose_rgb", "f_d") / "eval.json").read_text())
    assert fd["variant"] == "fi" and any("allow_random" in o and "vnet" in o for o in fd["overrides"])
    assert json.loads((bench.row_dir(0, "rgb", "scratch") / "eval.json").read_text())["variant"] == "scratch_fs"
    lines.clear()
    assert bench.run()["protocols"] == summary["protocols"]   # nothing left to run, same summary
    assert "0 to run" in lines[0] and len(lines) == 1


def test_tables_iv_and_v_run_in_the_same_form_with_their_own_orders(tmp_path):
    from csvr.evaluate.benchmark import TABLE_ORDER

    assert [r.key for r in protocol_rows("table_iv")] == ["l2", "infonce", "mi_infonce"]
    assert {r.finetune_variant for r in protocol_rows("table_iv")} == {"video_only"}
    assert [r.key for r in protocol_rows("table_v")] == ["recon", "pred", "both"]
    bench = Benchmark(store=tmp_path, out_dir=tmp_path / "b", seeds=[0, 1], pretrain_config=tmp_path,
                      finetune_config=tmp_path, protocols=("table_v",))
    ids = list(range(40))
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        for key, p in (("recon", 0.3), ("pred", 0.35), ("both", 0.9)):
            _write_row(bench.row_dir(seed, "table_v", key), ids, (rng.random(40) < p).astype(int).tolist())
    pairs = {(q["a"], q["b"]): q["verdict"] for q in bench.summary()["protocols"]["table_v"]["pairs"]}
    assert set(pairs) == set(TABLE_ORDER["table_v"]) and pairs[("recon", "both")] == "holds"
