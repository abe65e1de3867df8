"""Kill-and-resume: in deterministic mode a resumed pretraining run ends with the same parameters."""

from __future__ import annotations

import json

import pytest
import torch

from csvr.train import checkpoint as ckpt
from csvr.train.config import PretrainConfig, load_config
from csvr.train.pretrain import pretrain
from train_testdata import FAST, TINY_PRETRAIN, stage_list, train_store  # noqa: F401  (fixture)


class Killed(RuntimeError):
    pass


def _cfg(*extra: str) -> PretrainConfig:
    over = FAST + tuple(stage_list(pose=4, video=4)) + ("run.deterministic=true", "run.checkpoint_every=1") + extra
    return load_config(PretrainConfig, TINY_PRETRAIN, over)


def _params(path) -> dict[str, torch.Tensor]:
    return ckpt.load(path)["model"]


def test_resume_after_kill_matches_uninterrupted_run(train_store, tmp_path):
    torch.set_num_threads(1)
    full = pretrain(_cfg(), train_store, tmp_path / "full")

    def kill_at(stage: str, step: int) -> None:
        if stage == "video" and step == 2:
            raise Killed("simulated kill")

    with pytest.raises(Killed):
        pretrain(_cfg(), train_store, tmp_path / "resumed", step_hook=kill_at)
    assert (tmp_path / "resumed" / "checkpoints" / "pose" / "final.pt").is_file()
    assert not (tmp_path / "resumed" / "checkpoints" / "video" / "final.pt").exists()
    assert ckpt.load(tmp_path / "resumed" / "checkpoints" / "video" / "last.pt")["progress"]["step"] == 2
    # a plain re-run refuses to overwrite; --resume continues from video step 2
    with pytest.raises(FileExistsError, match="--resume"):
        pretrain(_cfg(), train_store, tmp_path / "resumed")
    resumed = pretrain(_cfg(), train_store, tmp_path / "resumed", resume=True)

    a, b = _params(full), _params(resumed)
    assert a.keys() == b.keys()
    moved = 0
    for k in a:
        assert torch.equal(a[k], b[k]), f"parameter {k} differs after resume"
    # the video stage did train: its generator differs from a fresh initialisation's
    init = ckpt.load(tmp_path / "full" / "checkpoints" / "pose" / "final.pt")["model"]
    for k in a:
        if k.startswith("video_gen_r.") and a[k].is_floating_point():
            moved += int(not torch.equal(a[k], init[k]))
    assert moved > 0


def test_checkpoints_load_weights_only_and_hold_only_plain_data(train_store, tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(PretrainConfig, TINY_PRETRAIN, FAST + tuple(stage_list(pose=2)) + ("run.image_every=2",))
    out = pretrain(cfg, train_store, tmp_path / "run")
    obj = torch.load(out, weights_only=True)  # must not need any allow-listed class
    assert obj["format"] == ckpt.FORMAT and obj["trained_groups"] == ["pose_gen", "pose_disc"]
    assert obj["config"]["batch_size"] == 4 and isinstance(obj["config"], dict)
    last = torch.load(tmp_path / "run" / "checkpoints" / "pose" / "last.pt", weights_only=True)
    assert set(last["rng"]) >= {"torch", "numpy", "python"}
    assert last["progress"]["stage"] == "pose" and last["progress"]["step"] == 2
    assert {"epoch", "batch"} <= set(last["progress"]) and last["optimizer"] is not None
    assert (tmp_path / "run" / "config.yaml").is_file()
    # per-step log records with the documented keys, and a skeleton plot of generated poses
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert {"step", "stage", "epoch", "lr", "samples_per_s", "data_wait_frac", "loss/pose_l2", "loss/pose_gp",
                "loss/pose_d", "loss/pose_g", "grad_norm/pose_gen", "grad_norm/pose_disc"} <= set(r)
        assert r["stage"] == "pose" and r["lr"] > 0 and 0 <= r["data_wait_frac"] <= 1
    png = tmp_path / "run" / "images" / "pose" / "step_000002_poses.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ the input stream (ResumableBatches)
from itertools import islice  # noqa: E402

from csvr.train.data import ClipDataset, ClipSpec, ShardLocalSampler  # noqa: E402
from csvr.train.loop import Position, ResumableBatches  # noqa: E402

STREAM_SPEC = ClipSpec(frames=2, stride=2, future_frames=2, max_iframes=2, crop=8)


@pytest.fixture(scope="module")
def fake_store(tmp_path_factory):
    from data_fakestore import FakeStoreSpec, FakeVideo, write_fake_store

    videos = [FakeVideo(30 + 3 * i, label=i % 4) for i in range(11)]
    spec = FakeStoreSpec(videos=videos, frame_size=(12, 16), chunk_frames=1, shard_frames=32)
    return write_fake_store(tmp_path_factory.mktemp("stream") / "fake.zarr", spec)


def _stream(store, loader: str, position: Position | None = None, workers: int = 2, depth: int = 2):
    ds = ClipDataset(store, split="train", spec=STREAM_SPEC)
    return ResumableBatches(ds, ShardLocalSampler(ds, seed=4, drop_last=True), 3, num_workers=workers,
                            pin_memory=False, seed=4, position=position, loader=loader, depth=depth)


def _copy(batch):
    return {k: v.clone() for k, v in batch.items()}


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stream_reads_through_the_threaded_loader_and_equals_the_dataloader_path(fake_store):
    threaded, processes = _stream(fake_store, "threads"), _stream(fake_store, "processes", workers=0)
    assert threaded.loader == "threads" and processes.loader == "processes"
    n = threaded.batches_per_epoch()  # 11 videos, batch 3 -> 3 batches per epoch
    ref = [_copy(b) for b in islice(processes, 3 * n + 1)]  # across epoch boundaries
    got = [_copy(b) for b in islice(threaded, 3 * n + 1)]
    assert all(_equal(a, b) for a, b in zip(got, ref)) and len(got) == 3 * n + 1
    assert threaded.position == Position(3, 1)
    assert "crop_origin" in ref[0] and ref[0]["clip"].shape[2:4] == (8, 8)  # the reader-side crop


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_batches_kept_for_depth_requests_are_unchanged(fake_store, depth):
    """Reused ring buffers: a consumer that keeps each batch while it requests the next `depth - 1` (so it
    holds the last `depth` batches; the training loops hold one raw batch until the next request) sees
    exactly what it was given."""
    ref = [_copy(b) for b in islice(_stream(fake_store, "processes", workers=0), 10)]
    held, ptrs = [], set()
    for j, batch in enumerate(islice(_stream(fake_store, "threads", depth=depth), 10)):
        held.append(batch)
        ptrs.add(batch["clip"].data_ptr())
        for i in range(max(0, j - depth + 1), j + 1):
            assert _equal(held[i], ref[i]), (j, i)
    assert len(ptrs) < 10  # buffers really are reused (views, not copies)


def test_training_loop_pattern_keeps_its_raw_batch_intact(fake_store):
    """What pretrain/finetune do: `batch = augment(to_device(next(it)))`; the augmented dict keeps views of
    the raw batch (labels, masks, indices) until the next request. Checked against copies."""
    from csvr.train.data import ClipAugment
    from csvr.train.loop import to_device

    aug = ClipAugment(crop=8, train=True)
    it = iter(_stream(fake_store, "threads"))
    ref = iter(_stream(fake_store, "processes", workers=0))
    for _ in range(8):
        raw = next(it)
        want = _copy(next(ref))
        batch = aug(to_device(raw, torch.device("cpu")))
        for key in ("label", "video_index", "iframe_mask", "frame_indices", "crop_origin"):
            assert torch.equal(batch[key], want[key]), key
        assert batch["label"].data_ptr() == raw["label"].data_ptr()  # a view of the ring, hence the contract


@pytest.mark.parametrize("loader", ["threads", "processes"])
def test_resumed_stream_equals_the_uninterrupted_one(fake_store, loader):
    workers = 2 if loader == "threads" else 0
    full = [_copy(b) for b in islice(_stream(fake_store, loader, workers=workers), 8)]
    for k in (1, 3, 4, 7):  # mid-epoch and on epoch boundaries (3 batches per epoch)
        stream = _stream(fake_store, loader, workers=workers)
        it = iter(stream)
        for _ in range(k):
            next(it)
        pos = Position(stream.position.epoch, stream.position.batch)
        assert pos == Position(k // 3, k % 3)
        resumed = [_copy(b) for b in islice(_stream(fake_store, loader, position=pos, workers=workers), 8 - k)]
        assert all(_equal(a, b) for a, b in zip(resumed, full[k:])), k


def test_stream_closes_its_threads_when_dropped(fake_store):
    import gc
    import threading

    it = iter(_stream(fake_store, "threads"))
    next(it)
    assert any(t.name.startswith("csvr-loader") for t in threading.enumerate())
    it.close()
    del it
    gc.collect()
    assert not any(t.name.startswith("csvr-loader") for t in threading.enumerate())


def test_pretraining_data_crops_in_the_reader(train_store):
    from csvr.train.distributed import DistInfo
    from csvr.train.pretrain import build_data

    cfg = _cfg()
    for stage in (None, "pose", "context", "video"):
        ds, _, _ = build_data(cfg, train_store, DistInfo(), stage=stage)
        assert ds.spec.crop == cfg.data.crop, stage
