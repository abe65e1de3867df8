"""Damage after the write (issue 12's table): every case is an error naming the damage, both in the training
reader (`StoreReader` / `ClipDataset`) and in `csvr shards verify` (`verify_store`); none is silent."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from csvr.contracts import shard_key
from csvr.preprocess.verify import verify_store
from csvr.train.data import ClipDataset, ClipSpec, StoreError, StoreReader, StoreReadError


@pytest.fixture
def copy(synthetic_store, tmp_path) -> Path:
    dst = tmp_path / "damaged.zarr"
    shutil.copytree(synthetic_store, dst)
    return dst


def _shard(store: Path, name: str, k: int = 0) -> Path:
    return store / shard_key(name, k, zarr.open_array(str(store / name), mode="r").ndim)


def _flip(path: Path, at: float) -> None:
    b = bytearray(path.read_bytes())
    b[int(len(b) * at)] ^= 0xFF
    path.write_bytes(bytes(b))


def _verify_problems(store: Path, *words: str) -> list[str]:
    problems, _ = verify_store(str(store))
    hits = [p for p in problems if all(w in p for w in words)]
    assert hits, problems
    return hits


def test_an_undamaged_store_opens_and_verifies(synthetic_store):
    StoreReader(synthetic_store, verify_checksums=True)
    assert verify_store(str(synthetic_store))[0] == []
    attrs = zarr.open_array(str(synthetic_store / "frames"), mode="r").attrs
    assert set(attrs["shard_bytes"]) == set(attrs["shard_sha256"])  # the writer records every shard's size


def test_flipped_byte_in_frames_is_caught_by_the_checksum_option_and_verify(copy):
    _flip(_shard(copy, "frames"), 0.5)
    StoreReader(copy)  # same size, table intact: the cheap checks pass (the default costs no read)
    with pytest.raises(StoreError, match=r"array 'frames' shard 0 .*c/0/0/0/0\).*checksum mismatch"):
        StoreReader(copy, verify_checksums=True)
    _verify_problems(copy, "frames: shard 0", "checksum mismatch")


def test_flipped_byte_in_poses_fails_the_read_naming_array_shard_rows_and_videos(copy):
    _flip(_shard(copy, "poses/keypoints"), 0.3)
    reader = StoreReader(copy)
    rows = np.arange(reader.shard_rows_of["poses/keypoints"])
    rows = rows[rows < reader.num_rows]
    with pytest.raises(StoreReadError, match=r"reading array 'poses/keypoints' rows 0\.\.\d+ \(videos? .+\) from shard "
                                             r"file\(s\) .*poses/keypoints/c/0/0/0/0 failed"):
        reader.read_rows("poses/keypoints", rows)
    _verify_problems(copy, "poses/keypoints: shard 0")


def test_truncated_frames_shard_is_refused_on_open(copy):
    f = _shard(copy, "frames")
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(StoreError, match=r"array 'frames' shard 0 .* is \d+ bytes, recorded \d+: truncated"):
        ClipDataset(copy, split="train", spec=ClipSpec(frames=4, stride=1, future_frames=0, max_iframes=0))
    _verify_problems(copy, "frames: shard 0", "checksum mismatch")


def test_deleted_iframes_shard_is_refused_on_open_never_read_as_zeros(copy):
    _shard(copy, "iframes/images").unlink()
    with pytest.raises(StoreError, match=r"array 'iframes/images' shard 0 .* recorded as written but its file is missing"):
        StoreReader(copy)
    _verify_problems(copy, "iframes/images: shard 0")


@pytest.mark.parametrize("column,change", [("num_frames", 1), ("label", 1)])
def test_changed_table_values_are_refused_on_open(copy, column, change):
    arr = zarr.open_array(str(copy / "videos" / column), mode="r+")
    old = arr[:]
    new = old.copy()
    new[0] = (old[0] + change) % (int(old.max()) + 1) if column == "label" else old[0] + change
    arr[:] = new
    with pytest.raises(StoreError, match="per-video table checksum mismatch"):
        StoreReader(copy)
    _verify_problems(copy, "per-video table: checksum mismatch")


def test_pretrain_verify_store_refuses_a_flipped_frame(copy, tmp_path):
    from click.testing import CliRunner

    from csvr.cli import main
    from train_testdata import FAST, TINY_PRETRAIN

    _flip(_shard(copy, "frames"), 0.5)
    args = ["pretrain", "--config", str(TINY_PRETRAIN), "--store", str(copy), "--run-dir", str(tmp_path / "run"),
            "--verify-store", "--set", "stages=[{name: context, steps: 1}]"] + [a for o in FAST for a in ("--set", o)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0 and "checksum mismatch" in res.output, res.output
