"""ThreadedLoader: same batches as the DataLoader path, rank split, buffer-reuse contract, clean shutdown."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader

from csvr.train.data import ClipDataset, ClipSpec, EvalClipDataset, ShardLocalSampler, ThreadedLoader, collate_samples
from data_fakestore import FakeStoreSpec, FakeVideo, write_fake_store

torch.set_num_threads(1)
SPEC = ClipSpec(frames=2, stride=2, future_frames=2, max_iframes=2)
CROP = ClipSpec(frames=3, stride=2, future_frames=0, max_iframes=1, crop=8, poses=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    videos = [FakeVideo(30 + 3 * i, label=i % 4) for i in range(14)]
    spec = FakeStoreSpec(videos=videos, frame_size=(12, 16), chunk_frames=1, shard_frames=32)
    return write_fake_store(tmp_path_factory.mktemp("data_threaded") / "fake.zarr", spec)


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("spec", [SPEC, CROP], ids=["full", "cropped"])
def test_same_batches_as_dataloader(store, spec):
    ds = ClipDataset(store, split="train", spec=spec)
    sampler = ShardLocalSampler(ds, seed=5)
    sampler.set_epoch(2)
    ref = list(DataLoader(ds, batch_size=3, sampler=sampler, num_workers=0, collate_fn=collate_samples))
    with ThreadedLoader(ds, 3, sampler, threads=2, depth=2, prefetch=2) as loader:
        got = list(loader)
        assert len(got) == len(ref) == len(loader) == 5  # 14 items -> 4 full batches + 1 of 2
        for a, b in zip(got, ref):
            _assert_same(a, b)
        again = list(loader)  # a second pass (same epoch) reuses threads and buffers: same batches
        for a, b in zip(again, ref):
            _assert_same(a, b)
        sampler.set_epoch(3)  # set_epoch goes through the sampler
        other = [int(v) for b in loader for v in b["video_index"]]
        assert other != [int(v) for b in ref for v in b["video_index"]]
        assert sorted(other) == sorted(int(v) for b in ref for v in b["video_index"])


def test_eval_dataset_and_drop_last(store):
    ds = EvalClipDataset(store, split=None, spec=CROP, num_clips=3)
    keys = list(range(len(ds)))
    ref = [collate_samples(ds.__getitems__(list(b))) for b in BatchSampler(keys, 4, True)]
    with ThreadedLoader(ds, 4, keys, threads=3, drop_last=True) as loader:
        got = list(loader)
    assert len(got) == len(ref) == len(ds) // 4
    for a, b in zip(got, ref):
        _assert_same(a, b)
    assert got[0]["clip_index"].tolist() == [0, 1, 2, 0]


def test_no_duplicates_across_two_ranks(store):
    ds = ClipDataset(store, split="train", spec=CROP)
    seen = []
    for rank in range(2):
        sampler = ShardLocalSampler(ds, num_replicas=2, rank=rank, seed=1)
        with ThreadedLoader(ds, 2, sampler, threads=2) as loader:
            seen.append([int(v) for b in loader for v in b["video_index"]])
    assert len(seen[0]) == len(seen[1]) == 7
    assert sorted(seen[0] + seen[1]) == sorted(int(v) for v in ds.videos)


def test_reused_buffers_keep_batches_intact_under_the_contract(store):
    ds = ClipDataset(store, split="train", spec=CROP)
    sampler = ShardLocalSampler(ds, seed=3)
    ref = list(DataLoader(ds, batch_size=2, sampler=sampler, collate_fn=collate_samples))
    depth = 2
    with ThreadedLoader(ds, 2, sampler, threads=2, depth=depth, prefetch=2, safe=False) as loader:
        held: list[dict[str, torch.Tensor]] = []
        ptrs = set()
        for j, batch in enumerate(loader):
            ptrs.add(batch["clip"].data_ptr())
            held.append(batch)
            # every batch handed out in the last `depth` requests is still exactly what it was
            for i in range(max(0, j - depth + 1), j + 1):
                _assert_same(held[i], ref[i])
        assert len(ptrs) == depth + 2  # the ring really is reused (4 buffers for 7 batches)
        # beyond the contract, old views were overwritten (this is why the contract exists)
        assert any(not torch.equal(held[i]["clip"], ref[i]["clip"]) for i in range(len(ref) - depth - 2))


def test_safe_mode_clones_batches(store):
    ds = ClipDataset(store, split="train", spec=CROP)
    sampler = ShardLocalSampler(ds, seed=3)
    ref = list(DataLoader(ds, batch_size=2, sampler=sampler, collate_fn=collate_samples))
    with ThreadedLoader(ds, 2, sampler, threads=2, depth=1, prefetch=1, safe=True) as loader:
        held = list(loader)  # every batch kept to the end: the ring (2 buffers) was reused 3x meanwhile
    assert len({b["clip"].data_ptr() for b in held}) == len(held)
    for a, b in zip(held, ref):
        _assert_same(a, b)


def _loader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("csvr-loader")]


def test_early_stop_and_close_leave_no_threads(store):
    ds = ClipDataset(store, split="train", spec=CROP)
    sampler = ShardLocalSampler(ds, seed=0)
    loader = ThreadedLoader(ds, 2, sampler, threads=2, depth=1, prefetch=3, safe=False)
    ref = list(DataLoader(ds, batch_size=2, sampler=sampler, collate_fn=collate_samples))
    for j, batch in enumerate(loader):
        if j == 1:
            break  # jobs in flight are cancelled or awaited by the generator's close
    assert loader._epoch is None
    first = next(iter(loader))  # a new pass after an early stop starts from the beginning
    _assert_same(first, ref[0])
    stale = iter(loader)
    next(stale)
    it = iter(loader)  # a new pass closes the unfinished one: the stale iterator ends, writes nothing
    assert list(stale) == []
    assert torch.equal(next(it)["clip"], ref[0]["clip"])
    assert _loader_threads()
    loader.close()  # closes an unfinished pass too
    assert not _loader_threads()
    assert next(iter(loader))["clip"].shape == (2, 3, 8, 8, 3)  # usable again after close
    loader.close()
    assert not _loader_threads()


def test_errors_propagate_and_bad_input_is_refused(store):
    ds = ClipDataset(store, split="train", spec=CROP)
    with pytest.raises(TypeError, match="batch_layout"):
        ThreadedLoader(list(range(4)), 2)
    with pytest.raises(ValueError, match="threads"):
        ThreadedLoader(ds, 2, threads=0)
    with ThreadedLoader(ds, 2, [(0, 1), (999, 2)], threads=2) as loader:
        with pytest.raises(IndexError, match="out of range"):
            list(loader)
        assert loader._epoch is None  # the failed pass was closed
    assert not _loader_threads()


class _DelayedCopy:
    """A stand-in for an asynchronous host->device copy: the copy runs `delay` s later in another
    thread; `synchronize()` (what a CUDA event offers) waits for it."""

    def __init__(self, batch: dict[str, torch.Tensor], delay: float) -> None:
        self.out = {k: torch.empty_like(v) for k, v in batch.items()}
        self._thread = threading.Thread(target=self._copy, args=(batch, delay))
        self._thread.start()

    def _copy(self, batch: dict[str, torch.Tensor], delay: float) -> None:
        time.sleep(delay)
        for k, v in batch.items():
            self.out[k].copy_(v)

    def synchronize(self) -> None:
        self._thread.join()


@pytest.mark.parametrize("fenced", [True, False], ids=["fenced", "unfenced-control"])
def test_slots_wait_for_the_fence_of_their_hand_out_copy(store, fenced):
    """The CUDA path's logic on the CPU: a slot is refilled only after the (asynchronous) copy of its
    previous batch finished. Without the fence (control) the slow copies read overwritten buffers."""
    ds = ClipDataset(store, split="train", spec=CROP)
    sampler = ShardLocalSampler(ds, seed=3)
    ref = list(DataLoader(ds, batch_size=2, sampler=sampler, collate_fn=collate_samples))
    copies: list[_DelayedCopy] = []

    def transfer(batch):
        copy = _DelayedCopy(batch, 0.15)
        copies.append(copy)
        return copy.out, (copy if fenced else None)

    with ThreadedLoader(ds, 2, sampler, threads=2, depth=1, prefetch=1, safe=False, transfer=transfer) as loader:
        got = list(loader)  # the consumer keeps every batch: they are copies, not ring views
    for c in copies:
        c.synchronize()
    assert len(got) == len(ref) == 7
    same = [all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(got, ref)]
    if fenced:
        assert all(same)
    else:
        assert not all(same)  # proves the test can see an unfenced overwrite


def test_device_transfer_helper():
    from csvr.train.data.threaded import device_transfer

    assert device_transfer("cpu") is None  # CPU batches stay ring views (the depth contract)
    out, fence = device_transfer("meta")({"x": torch.ones(2, 3)})  # a non-CUDA device: plain copy, no fence
    assert out["x"].device.type == "meta" and out["x"].shape == (2, 3) and fence is None
    if torch.cuda.is_available():  # pragma: no cover - no GPU on the development machine
        src = {"x": torch.arange(6).pin_memory()}
        out, fence = device_transfer("cuda")(src)
        fence.synchronize()
        assert out["x"].is_cuda and torch.equal(out["x"].cpu(), src["x"])


def test_device_loader_on_cpu_hands_out_ring_views(store):
    ds = ClipDataset(store, split="train", spec=CROP)
    with ThreadedLoader(ds, 2, ShardLocalSampler(ds, seed=0), threads=1, safe=False, device="cpu") as loader:
        assert loader._transfer is None and not loader.pin_memory
        ptrs = {b["clip"].data_ptr() for b in loader}
    assert len(ptrs) == loader.depth + loader.prefetch
