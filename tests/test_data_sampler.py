"""ShardLocalSampler: no duplicates across ranks and workers, determinism, shard locality, epochs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from csvr.train.data import ClipDataset, ClipSpec, ShardLocalSampler
from data_fakestore import FakeStoreSpec, FakeVideo, write_fake_store

torch.set_num_threads(1)
SPEC = ClipSpec(frames=2, stride=2, future_frames=2, max_iframes=1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    videos = [FakeVideo(40 + 3 * i, label=i % 4) for i in range(16)]
    spec = FakeStoreSpec(videos=videos, frame_size=(16, 20), chunk_frames=4, shard_frames=64)
    return write_fake_store(tmp_path_factory.mktemp("data_sampler") / "fake.zarr", spec)


def _samples(store, rank: int, world: int, workers: int, seed: int = 0, epoch: int = 0):
    ds = ClipDataset(store, split="train", spec=SPEC)
    sampler = ShardLocalSampler(ds, num_replicas=world, rank=rank, seed=seed)
    sampler.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=3, sampler=sampler, num_workers=workers,
                        multiprocessing_context="fork" if workers else None)
    out = []
    for b in loader:
        out += [(int(v), tuple(f.tolist())) for v, f in zip(b["video_index"], b["frame_indices"])]
    return out


def test_no_duplicates_across_two_ranks_and_two_workers(store):
    r0, r1 = _samples(store, 0, 2, 2), _samples(store, 1, 2, 2)
    assert len(r0) == len(r1) == 8
    videos = [v for v, _ in r0 + r1]
    assert sorted(videos) == list(range(16))  # every video exactly once over both ranks


def test_same_seed_same_batches_any_worker_count(store):
    a = _samples(store, 0, 1, 0, seed=7, epoch=3)
    b = _samples(store, 0, 1, 2, seed=7, epoch=3)
    assert a == b
    c = _samples(store, 0, 1, 0, seed=7, epoch=4)
    assert [v for v, _ in a] != [v for v, _ in c]  # a new epoch reshuffles
    assert sorted(v for v, _ in c) == list(range(16))


def test_order_is_shard_local(store):
    ds = ClipDataset(store, split="train", spec=SPEC)
    shards = ds.item_shards()
    assert len(np.unique(shards)) >= 5
    s = ShardLocalSampler(ds, num_replicas=1, rank=0, group_shards=1)
    for epoch in range(3):
        s.set_epoch(epoch)
        seq = shards[s.epoch_order()]
        runs = seq[np.r_[True, seq[1:] != seq[:-1]]]
        assert len(runs) == len(np.unique(seq))  # each shard read in one contiguous run
    s2 = ShardLocalSampler(ds, num_replicas=1, rank=0, group_shards=2)
    seq = shards[s2.epoch_order()]
    groups = [set(seq[i:i + 4]) for i in range(0, len(seq) - 4)]
    assert max(len(g) for g in groups) <= 4


def test_padding_and_drop_last():
    class Items:
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

        def item_shards(self):
            return np.arange(self.n) // 4

    parts = [list(ShardLocalSampler(Items(15), num_replicas=2, rank=r, yield_seeds=False)) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 8 and set(parts[0] + parts[1]) == set(range(15))
    parts = [list(ShardLocalSampler(Items(15), num_replicas=2, rank=r, drop_last=True, yield_seeds=False))
             for r in range(2)]
    assert len(parts[0]) == 7 and len(set(parts[0] + parts[1])) == 14
    seq = list(ShardLocalSampler(Items(10), num_replicas=1, rank=0, shuffle=False, yield_seeds=False))
    assert seq == list(range(10))
    with pytest.raises(ValueError, match="rank"):
        ShardLocalSampler(Items(4), num_replicas=2, rank=2)
