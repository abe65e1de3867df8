"""Disk space (issue 14 item 2): the preflight estimate, the refusal before writing, and a disk that fills
up mid-run (an injected ENOSPC) stopping cleanly and resuming to the store an uninterrupted run writes."""

from __future__ import annotations

import errno
from collections import namedtuple

import numpy as np
import pytest
import zarr

import csvr.preprocess.space as space
import csvr.preprocess.store as st
from csvr.preprocess.pipeline import preprocess_dataset
from csvr.preprocess.verify import verify_store
from csvr.preprocess.space import DiskSpaceError, estimate_store
from preprocess_testdata import make_dataset

ARRAYS = ("frames", "poses/keypoints", "poses/main_actor", "iframes/images", "iframes/frame_index")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("space_data")
    return make_dataset(root, per_class=2)


def test_estimate_counts_the_frames_and_bytes_of_the_store(data, tmp_path):
    m = data
    est = estimate_store([m.root / v.path for v in m.videos], frame_size=(128, 171), frame_step=1,
                         iframe_policy="reencode", gop=12, max_people=2, codec="none")
    assert est["probed"] == 4 and est["stored_frames"] == 126  # 30 + 33 + 30 + 33 frames
    out = tmp_path / "s.zarr"
    preprocess_dataset(m, out, pose="groundtruth", workers=0, shard_frames=32, progress=False)
    g = zarr.open_group(str(out), mode="r")
    assert g["frames"].shape[0] == est["stored_frames"]
    real = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    assert 0.8 * real <= est["store_bytes"] <= 1.3 * real, (est["store_bytes"], real)


def test_too_little_space_is_refused_before_anything_is_written(data, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(space.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 5000, 5000))
    out = tmp_path / "refused.zarr"
    with pytest.raises(DiskSpaceError, match=r"needs about .* MB more .* estimated from 4 of 4 videos: 126 frames.* "
                                             r"only 5\.0 kB is free .*--no-space-check"):
        preprocess_dataset(data, out, pose="groundtruth", workers=0, shard_frames=32, progress=False)
    assert not out.exists()
    summary = preprocess_dataset(data, out, pose="groundtruth", workers=0, shard_frames=32, progress=False,
                                 space_check=False)
    assert summary["ok"] == 4 and summary["space_estimate"] is None


def test_a_disk_full_mid_run_stops_cleanly_and_resumes_to_the_same_store(data, tmp_path, monkeypatch):
    ref = tmp_path / "ref.zarr"
    preprocess_dataset(data, ref, pose="groundtruth", workers=0, shard_frames=32, progress=False)
    real_write = st.write_shard
    calls = {"n": 0}

    def full_after_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(st, "write_shard", full_after_two)
    out = tmp_path / "full.zarr"
    with pytest.raises(DiskSpaceError, match=r"store .*full\.zarr: the disk filled up while writing .* free now\. "
                                             r"What was written is kept.*rerun the same command to resume"):
        preprocess_dataset(data, out, pose="groundtruth", workers=0, shard_frames=32, progress=False)
    assert not zarr.open_group(str(out), mode="r").attrs["complete"]
    monkeypatch.setattr(st, "write_shard", real_write)  # space freed
    preprocess_dataset(data, out, pose="groundtruth", workers=0, shard_frames=32, progress=False)
    assert verify_store(str(out))[0] == []
    a, b = zarr.open_group(str(ref), mode="r"), zarr.open_group(str(out), mode="r")
    for name in ARRAYS:
        assert np.array_equal(a[name][:], b[name][:]), name
