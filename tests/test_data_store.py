"""Reader-side store access: validation and refusals, pickling, reads that match the data."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from csvr.train.data import ClipDataset, StoreError, StoreReader
from data_fakestore import FakeStoreSpec, FakeVideo, write_fake_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_fake_store(tmp_path_factory.mktemp("data_store") / "fake.zarr")


def test_refuses_incomplete_store_unless_allowed(tmp_path):
    p = write_fake_store(tmp_path / "inc.zarr", FakeStoreSpec(videos=[FakeVideo(20)], complete=False))
    with pytest.raises(StoreError, match="incomplete"):
        StoreReader(p)
    with pytest.raises(StoreError, match="incomplete"):
        ClipDataset(p)
    assert StoreReader(p, allow_incomplete=True).num_rows == 20


def test_refuses_unknown_schema_and_non_stores(tmp_path):
    p = write_fake_store(tmp_path / "v9.zarr", FakeStoreSpec(videos=[FakeVideo(20)], schema="csvr-store/9"))
    with pytest.raises(StoreError, match=r"unknown schema 'csvr-store/9'"):
        StoreReader(p, allow_incomplete=True)
    with pytest.raises(StoreError, match="no such file"):
        StoreReader(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="plain"):
        StoreReader(tmp_path / "plain")


def test_refuses_missing_array(tmp_path):
    import shutil

    p = write_fake_store(tmp_path / "noposes.zarr", FakeStoreSpec(videos=[FakeVideo(20)]))
    shutil.rmtree(p / "poses" / "main_actor")
    with pytest.raises(StoreError, match="poses/main_actor"):
        StoreReader(p)


def test_table_and_splits(store):
    r = StoreReader(store)
    assert len(r.videos) == 6 and r.frame_size == (128, 171)
    assert r.videos.rows_in_split("train").tolist() == [0, 1, 2]  # row 4 failed: excluded
    assert r.videos.rows_in_split("test").tolist() == [3, 5]
    assert r.videos.rows_in_split(None).tolist() == [0, 1, 2, 3, 5]
    with pytest.raises(StoreError, match="no readable videos"):
        ClipDataset(store, split="unused")


@pytest.mark.parametrize("mode", ["auto", "range", "index"])
def test_read_rows_any_order_and_repeats(store, mode):
    r = StoreReader(store, read_mode=mode)
    rows = np.array([140, 3, 7, 7, 100, 0])
    out = r.read_rows("frames", rows)
    fs = r.videos["frame_start"]
    for k, row in enumerate(rows):
        video = int(np.searchsorted(fs, row, side="right") - 1)
        assert out[k, 0, 0, 0] == (row - fs[video]) % 256 and out[k, 5, 9, 1] == video and out[k, 0, 9, 2] == 9


def test_reader_pickles_without_open_handles(store):
    r = StoreReader(store)
    r.read_rows("frames", np.array([1]))
    assert r._arrays  # opened in this process
    r2 = pickle.loads(pickle.dumps(r))
    assert r2._arrays == {}
    assert r2.read_rows("frames", np.array([2]))[0, 0, 0, 0] == 2


def test_direct_chunk_reads_equal_zarr_on_every_array(store):
    fast, slow = StoreReader(store), StoreReader(store, direct=False)
    rng = np.random.default_rng(1)
    for name in ("frames", "poses/keypoints", "poses/boxes", "poses/main_actor", "iframes/images",
                 "iframes/frame_index", "iframes/source_index"):
        assert fast.direct_reader(name) is not None, name
        n = slow.array(name).shape[0]
        for _ in range(3):
            rows = rng.integers(0, n, 9)
            a, b = fast.read_rows(name, rows), slow.read_rows(name, rows)
            assert a.dtype == b.dtype and np.array_equal(a, b), name
    with pytest.raises(IndexError, match="out of range"):
        fast.read_rows("frames", np.array([fast.num_rows]))


def test_direct_reader_fill_value_and_fallback(tmp_path):
    import zarr
    from zarr.codecs import GzipCodec

    from csvr.train.data.fastchunks import DirectChunkReader

    a = zarr.create_array(tmp_path / "a.zarr", shape=(40, 3), dtype="int16", chunks=(4, 3), shards=(16, 3),
                          fill_value=7)
    a[0:4] = np.arange(12, dtype=np.int16).reshape(4, 3)  # only the first chunk is written
    r = DirectChunkReader.open(tmp_path / "a.zarr")
    rows = np.array([1, 5, 20, 39])
    assert np.array_equal(r.read(rows), a.oindex[rows])
    zarr.create_array(tmp_path / "g.zarr", shape=(8, 3), dtype="uint8", chunks=(4, 3), compressors=GzipCodec())
    assert DirectChunkReader.open(tmp_path / "g.zarr") is None  # unsupported codec: caller uses zarr-python
    zarr.create_array(tmp_path / "c.zarr", shape=(8, 4), dtype="uint8", chunks=(4, 2))
    assert DirectChunkReader.open(tmp_path / "c.zarr") is None  # chunked along axis 1


@pytest.mark.parametrize("chunk", [1, 4])
def test_read_rows_into_equals_zarr_with_and_without_crop(tmp_path, chunk):
    """The batched path (decompress straight into the destination, optional crop) returns zarr's bytes."""
    p = write_fake_store(tmp_path / f"c{chunk}.zarr", FakeStoreSpec(videos=[FakeVideo(30), FakeVideo(25)],
                                                                     chunk_frames=chunk))
    fast, slow = StoreReader(p), StoreReader(p, direct=False)
    assert fast.direct_reader("frames").chunk_rows == chunk
    rows = [17, 3, 3, 40, 0, 54]  # any order, repeats
    ref = slow.array("frames")[:][rows]
    for reader in (fast, slow):
        out = np.empty((len(rows), 128, 171, 3), np.uint8)
        reader.read_rows_into("frames", rows, out)
        assert np.array_equal(out, ref)
        win = (slice(8, 120), slice(29, 141))
        crop = np.empty((len(rows), 112, 112, 3), np.uint8)
        reader.read_rows_into("frames", rows, crop, win)
        assert np.array_equal(crop, ref[:, 8:120, 29:141])
    with pytest.raises(IndexError, match="out of range"):
        fast.read_rows_into("frames", [fast.num_rows], np.empty((1, 128, 171, 3), np.uint8))


def test_mmap_reads_equal_pread_and_are_off_for_incomplete_stores(tmp_path):
    p = write_fake_store(tmp_path / "m.zarr", FakeStoreSpec(videos=[FakeVideo(30), FakeVideo(25)], chunk_frames=1))
    mapped, plain = StoreReader(p), StoreReader(p, mmap=False)
    rows = [17, 3, 3, 40, 0, 54]
    a = np.empty((len(rows), 112, 112, 3), np.uint8)
    b = np.empty_like(a)
    win = (slice(8, 120), slice(29, 141))
    mapped.read_rows_into("frames", rows, a, win)
    plain.read_rows_into("frames", rows, b, win)
    assert np.array_equal(a, b) and a.any()
    d = mapped.direct_reader("frames")
    assert d.use_mmap and any(v is not None for v in d._maps.values())  # the map was really used
    assert not plain.direct_reader("frames").use_mmap and not plain.direct_reader("frames")._maps
    assert np.array_equal(mapped.read_rows("iframes/images", np.array([0, 1])),
                          plain.read_rows("iframes/images", np.array([0, 1])))
    clone = pickle.loads(pickle.dumps(mapped))  # maps never travel to workers
    assert clone._direct == {} and d._maps
    d.close()
    assert d._maps == {}
    c = np.empty_like(a)
    mapped.read_rows_into("frames", rows, c, win)  # usable again after close (reopens and remaps)
    assert np.array_equal(c, b)
    assert not StoreReader(p, allow_incomplete=True).direct_reader("frames").use_mmap


@pytest.mark.parametrize("use_mmap", [True, False])
def test_uncompressed_chunks_are_cropped_straight_from_their_bytes(tmp_path, use_mmap):
    """The pipeline's default layout (`--codec none`): 1-frame chunks with no compressor inside shards;
    the window is copied out of the chunk's bytes. Same bytes as zarr-python, cropped or not."""
    import zarr

    from csvr.train.data.fastchunks import DirectChunkReader

    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (37, 20, 24, 3), dtype=np.uint8)
    arr = zarr.create_array(tmp_path / "u.zarr", shape=data.shape, dtype="uint8", chunks=(1, 20, 24, 3),
                            shards=(16, 20, 24, 3), compressors=None)
    arr[:] = data
    r = DirectChunkReader.open(tmp_path / "u.zarr", use_mmap=use_mmap)
    assert r is not None and r.uncompressed and r.chunk_rows == 1
    rows = [36, 0, 5, 5, 17, 31]
    win = (slice(3, 15), slice(7, 19))
    out = np.empty((len(rows), 12, 12, 3), np.uint8)
    r.read_into(rows, out, win)
    assert np.array_equal(out, data[rows][:, 3:15, 7:19])
    strided = np.empty((len(rows), 20, 30, 3), np.uint8)[:, :, :24]  # a non-contiguous destination, no window
    r.read_into(rows, strided)
    assert np.array_equal(strided, data[rows])
    full = np.empty((len(rows), 20, 24, 3), np.uint8)
    r.read_into(rows, full)
    assert np.array_equal(full, data[rows])
