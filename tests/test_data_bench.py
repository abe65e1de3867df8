"""`csvr bench loader` end to end on a tiny fake store whose source videos are real PyAV-encoded files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from csvr.benchmarks.loader import bench_loader
from data_fakestore import FakeStoreSpec, FakeVideo, write_fake_store


def _encode(path, n: int) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        s.gop_size, s.bit_rate = 12, 8_000_000
        for i in range(n):
            img = np.full((120, 160, 3), (3 * i) % 256, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


@pytest.fixture(scope="module")
def bench_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("data_bench")
    spec = FakeStoreSpec(videos=[FakeVideo(70, 0), FakeVideo(80, 1)])
    store = write_fake_store(root / "fake.zarr", spec)
    for r, v in enumerate(spec.videos):  # the fake store records paths Class<label>/v_<row>.avi under its parent
        _encode(root / f"Class{v.label}" / f"v_{r:03d}.avi", v.num_frames)
    return store


def test_bench_loader_writes_three_rows_and_ratios(bench_store, tmp_path):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(bench_loader, [str(bench_store), "--json", str(out), "--workers", "0",
                                            "--batches", "2", "--batch-size", "2", "--pyav-batches", "1", "--repeats", "2"])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    rows = data["rows"]
    for row in ("store", "pyav", "raw", "store_threads", "store_threads_reuse", "pyav_threads", "raw_threads",
                "raw_threads_reuse"):
        assert rows[row]["clips_per_s"] > 0 and rows[row]["mb_per_s"] > 0
    assert rows["store"]["mode"] == "processes" and rows["store_threads"]["mode"] == "threads"
    assert rows["store_threads"]["safe"] is True and rows["store_threads_reuse"]["safe"] is False
    best = {fam: max((n for n in rows if n == fam or n.startswith(fam + "_threads")), key=lambda n: rows[n]["clips_per_s"])
            for fam in ("store", "pyav", "raw")}
    assert data["ratio_rows"]["store"] == best["store"] and data["ratio_rows"]["pyav"] == best["pyav"]
    cps = {k: rows[v]["clips_per_s"] for k, v in best.items()}
    assert data["ratio_vs_pyav"] == pytest.approx(cps["store"] / cps["pyav"])  # best store row / best PyAV row
    assert data["ratio_vs_raw"] == pytest.approx(cps["store"] / cps["raw"])
    # every optional decoder either has its rows or says why it was skipped; the fastest one is named
    from csvr.benchmarks.loader import ON_THE_FLY

    for name in ON_THE_FLY:
        assert (name in rows) != (name in data["decoders_skipped"])
    decoders = [n for n in rows if n.split("_threads")[0] in ("pyav", *ON_THE_FLY)]
    assert data["fastest_on_the_fly"] == max(decoders, key=lambda n: rows[n]["clips_per_s"])
    assert data["ratios_by_mode"]["processes"]["ratio_vs_pyav"] == pytest.approx(
        rows["store"]["clips_per_s"] / rows["pyav"]["clips_per_s"])
    assert data["ratios_by_mode"]["threads"]["ratio_vs_raw"] == pytest.approx(
        rows["store_threads"]["clips_per_s"] / rows["raw_threads"]["clips_per_s"])
    assert data["recipe"] == {"frames": 16, "stride": 4, "frame_size": [128, 171], "crop": 112,
                              "bytes_per_clip": 16 * 128 * 171 * 3}
    assert "ratio_vs_pyav" in res.output and "gpus_fed_per_loader_process" in data
    assert len(data["rows"]["raw"]["clips_per_s_runs"]) == 2 and data["repeats"] == 2
    # the training input itself, next to a raw read of the same full samples
    for row in ("training_path", "training_path_processes", "training_path_before", "raw_full"):
        assert rows[row]["clips_per_s"] > 0 and rows[row]["mode"] == "stream", row
    assert rows["training_path"]["loader"] == data["training_path_loader"] == "threads"
    assert data["training_path_full_samples_per_s"] == rows["training_path"]["clips_per_s"]
    assert data["training_path_vs_raw_full"] == pytest.approx(
        rows["training_path"]["clips_per_s"] / rows["raw_full"]["clips_per_s"])
    assert len(data["training_path_vs_raw_full_per_round"]) == 2 and "training_path_full_vs_pyav_clip" in data
    assert data["full_sample_recipe"]["crop"] == 112 and data["full_sample_recipe"]["future_frames"] == 16
    assert "training path (full CSVR sample" in res.output
    # the physical limit: a bare numpy copy of the training batch's bytes per sample, same threads and rounds
    bare = rows["bare_copy_full"]
    assert bare["clips_per_s"] > 0 and bare["mode"] == "bare" and len(bare["clips_per_s_runs"]) == 2
    assert bare["threads"] == 1  # = ResumableBatches' threads for --workers 0
    from csvr.train.data import StoreReader
    from csvr.benchmarks.loader import layout_bytes_per_sample, training_path_data

    reader = StoreReader(bench_store)
    _, ds, _ = training_path_data(str(bench_store), reader.videos.rows_in_split(None), frames=16, stride=4, crop=112,
                                  workers=0, device=torch.device("cpu"))
    layout_bytes = sum(int(np.prod(shape)) * torch.empty(0, dtype=dt).element_size()
                       for shape, dt in ds.batch_layout(2).values()) // 2
    assert bare["bytes_per_sample"] == layout_bytes == data["bare_copy_full_bytes_per_sample"]
    assert layout_bytes == layout_bytes_per_sample(ds, 2) == data["full_sample_recipe"]["bytes_per_sample"]
    assert data["bare_copy_full_samples_per_s"] == bare["clips_per_s"]
    assert data["training_path_vs_bare_copy"] == pytest.approx(
        data["training_path_full_samples_per_s"] / data["bare_copy_full_samples_per_s"], rel=1e-9)
    assert data["training_path_vs_bare_copy_per_round"] == pytest.approx(
        [a / b for a, b in zip(rows["training_path"]["clips_per_s_runs"], bare["clips_per_s_runs"])])
    assert "of the bare copy limit" in res.output and "zero-cost" in rows["raw_full"]["note"]


def test_bench_pyav_row_decodes_the_right_frames(bench_store):
    from csvr.benchmarks.loader import PyAVBench

    root = bench_store.parent
    ds = PyAVBench([str(root / "Class1" / "v_001.avi")], [80], frames=4, stride=4, size=(128, 171), crop=112)
    clip = ds[0].numpy()
    assert clip.shape == (4, 112, 112, 3)
    values = clip[:, 50, 50, 1].astype(int)  # encoded grey level = 3 x frame index (lossy: approximate)
    assert np.all(np.abs(np.diff(values) - 12) <= 3), values


@pytest.mark.parametrize("name", ["decord", "torchcodec"])
def test_bench_other_decoders_read_the_same_frames_as_pyav(bench_store, name):
    from csvr.benchmarks.loader import ON_THE_FLY, PyAVBench, decoder_available

    why = decoder_available(name)
    if why is not None:
        pytest.skip(f"{name} not usable here: {why}")
    path = [str(bench_store.parent / "Class1" / "v_001.avi")]
    ref = PyAVBench(path, [80], frames=4, stride=4, size=(128, 171), crop=112)[0].numpy().astype(int)
    clip = ON_THE_FLY[name](path, [80], frames=4, stride=4, size=(128, 171), crop=112)[0].numpy().astype(int)
    assert clip.shape == ref.shape == (4, 112, 112, 3)
    assert np.abs(clip[:, 50, 50, 1] - ref[:, 50, 50, 1]).max() <= 4  # same frames (grey level = 3 x index)


def test_missing_decoders_are_skipped_with_the_reason(monkeypatch):
    import builtins

    from csvr.benchmarks.loader import decoder_available

    real_import = builtins.__import__

    def no_decord(name, *a, **k):
        if name == "decord":
            raise ImportError("No module named 'decord'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_decord)
    assert decoder_available("decord") == "ImportError: No module named 'decord'"


def test_bench_needs_video_root_when_unknown(bench_store, tmp_path):
    res = CliRunner().invoke(bench_loader, [str(bench_store), "--json", str(tmp_path / "b.json"), "--workers", "0",
                                            "--batches", "1", "--batch-size", "1",
                                            "--video-root", str(tmp_path / "nowhere")])
    assert res.exit_code != 0 and "source videos not found" in res.output


def test_training_path_rows_read_the_same_samples_as_the_raw_row(bench_store, tmp_path):
    """`raw_full` differs from `training_path` only in where the frames come from: same batches."""
    from csvr.train.data import StoreReader
    from csvr.benchmarks.loader import _training_path_rows

    reader = StoreReader(bench_store)
    videos = reader.videos.rows_in_split(None)
    rows, recipe = _training_path_rows(str(bench_store), reader, videos, tmp_path, frames=4, stride=2, crop=112,
                                       workers=0, batch_size=2, train_config=None)
    make = {name: m for name, m, _ in rows}
    a, b = next(iter(make["training_path"](0))), next(iter(make["raw_full"](0)))
    assert a.keys() == b.keys() and "crop_origin" in a and a["clip"].shape == (2, 4, 112, 112, 3)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    before = next(iter(make["training_path_before"](0)))
    assert before["clip"].shape == (2, 4, 128, 171, 3) and torch.equal(before["frame_indices"], a["frame_indices"])
    assert recipe["max_iframes"] == 4 and recipe["bytes_per_sample"] > 0
    # the bare copy row copies exactly the bytes the training batches hold per sample
    assert sum(t.numel() * t.element_size() for t in a.values()) == 2 * recipe["bytes_per_sample"]
    bare = make["bare_copy_full"]
    assert bare.sample_bytes == recipe["bytes_per_sample"] and bare.threads == 1
    from csvr.benchmarks.loader import time_bare_copy

    res = time_bare_copy(bare, batch_size=2, batches=3, warmup=1, seed=0)
    assert res["clips"] == 6 and res["clips_per_s"] > 0


def test_bare_copy_copies_contiguous_chunks_at_seeded_offsets(tmp_path):
    from csvr.benchmarks.loader import BareCopy, _copy_sample, time_bare_copy

    src = np.arange(10_000, dtype=np.uint8).reshape(100, 100)
    np.save(tmp_path / "f.npy", src)
    bare = BareCopy(str(tmp_path / "f.npy"), 300, threads=2)
    out = np.empty(300, np.uint8)
    _copy_sample(bare.flat(), 128, out)
    assert np.array_equal(out, src.reshape(-1)[128:428])
    _copy_sample(bare.flat(), 9_900, out)  # wraps past the end
    assert np.array_equal(out, np.concatenate([src.reshape(-1)[9_900:], src.reshape(-1)[:200]]))
    big = BareCopy(str(tmp_path / "f.npy"), 20_000, threads=2)  # larger than the whole copy
    res = time_bare_copy(big, batch_size=3, batches=4, warmup=2, seed=1)
    assert res["clips"] == 12 and res["clips_per_s"] > 0
