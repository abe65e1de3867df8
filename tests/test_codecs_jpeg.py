"""The lossy `csvr.jpeg` frame codec (issue 14 item 1): quality, a standard Zarr v3 reader opens it, the loader's
direct reader decodes the same pixels, a whole preprocessing run writes a store that verifies and trains, and a
damaged JPEG chunk is an error that names the array and rows."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import zarr

from csvr.codecs import JpegCodec, decode_jpeg, encode_jpeg
from csvr.preprocess.pipeline import preprocess_dataset
from csvr.preprocess.verify import verify_store
from csvr.train.data import ClipDataset, ClipSpec, StoreReader, StoreReadError
from csvr.train.data.fastchunks import DirectChunkReader
from preprocess_testdata import make_dataset


def _scene(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth picture with a sharp-edged square: what frames of people in scenes look like to a codec."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h) + 60], -1)
    r, c = rng.integers(4, h // 2), rng.integers(4, w // 2)
    img[r:r + 12, c:c + 12] = rng.integers(0, 255, 3)
    return img.astype(np.uint8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_round_trip_quality_grows_with_the_quality_setting():
    img = _scene()
    got = {q: _psnr(decode_jpeg(encode_jpeg(img, q)), img) for q in (50, 90, 98)}
    assert got[50] < got[90] < got[98] and got[90] > 32, got
    assert decode_jpeg(encode_jpeg(img, 90)).shape == img.shape


def test_bad_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="not a decodable JPEG"):
        decode_jpeg(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"64x48, the array's frames are 171x128"):
        decode_jpeg(encode_jpeg(_scene()), (128, 171))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        encode_jpeg(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="quality"):
        JpegCodec(quality=0)


def test_the_codec_refuses_arrays_it_cannot_store(tmp_path):
    with pytest.raises(ValueError, match="chunks of one frame"):
        zarr.create_array(tmp_path / "a.zarr", shape=(4, 48, 64, 3), chunks=(2, 48, 64, 3), dtype="uint8",
                          serializer=JpegCodec(), compressors=None)
    with pytest.raises(ValueError, match="uint8"):
        zarr.create_array(tmp_path / "b.zarr", shape=(4, 48, 64, 3), chunks=(1, 48, 64, 3), dtype="float32",
                          serializer=JpegCodec(), compressors=None)


@pytest.fixture()
def jpeg_array(tmp_path):
    frames = np.stack([_scene(seed=s) for s in range(6)])
    a = zarr.create_array(tmp_path / "frames", shape=frames.shape, chunks=(1, 48, 64, 3), shards=(4, 48, 64, 3),
                          dtype="uint8", serializer=JpegCodec(quality=85), compressors=None)
    a[:] = frames
    return tmp_path / "frames", frames


def test_a_plain_zarr_reader_in_a_fresh_process_decodes_the_frames(jpeg_array):
    path, frames = jpeg_array
    expected = np.stack([decode_jpeg(encode_jpeg(f, 85)) for f in frames])
    # no csvr import there: zarr finds the codec through the package's `zarr.codecs` entry point
    code = ("import sys, zarr, numpy as np; a = zarr.open_array(sys.argv[1], mode='r'); "
            "print(a.metadata.to_dict()['codecs'][0]['configuration']['codecs'][0]['name']); "
            "np.save(sys.argv[2], a[:])")
    out = path.parent / "read.npy"
    res = subprocess.run([sys.executable, "-c", code, str(path), str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "csvr.jpeg"
    assert np.array_equal(np.load(out), expected)


def test_the_direct_reader_decodes_what_zarr_decodes(jpeg_array):
    path, frames = jpeg_array
    ref = zarr.open_array(path, mode="r")[:]
    r = DirectChunkReader.open(path)
    assert r is not None
    rows = np.array([0, 2, 3, 5])
    assert np.array_equal(r.read(rows), ref[rows])
    out = np.empty((3, 48, 64, 3), np.uint8)
    r.read_into([5, 1, 5], out)
    assert np.array_equal(out, ref[[5, 1, 5]])
    assert _psnr(ref, frames) > 30


@pytest.fixture(scope="module")
def jpeg_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpeg_data")
    m = make_dataset(root, per_class=2)
    out = tmp_path_factory.mktemp("jpeg_store") / "s.zarr"
    raw = out.parent / "raw.zarr"
    preprocess_dataset(m, out, pose="groundtruth", workers=0, shard_frames=32, progress=False, codec="jpeg",
                       jpeg_quality=90)
    preprocess_dataset(m, raw, pose="groundtruth", workers=0, shard_frames=32, progress=False)
    return out, raw


def test_a_jpeg_store_verifies_is_smaller_and_close_to_the_raw_frames(jpeg_store):
    out, raw = jpeg_store
    assert verify_store(str(out))[0] == []
    g, r = zarr.open_group(str(out), mode="r"), zarr.open_group(str(raw), mode="r")
    assert g.attrs["options"]["codec"] == "jpeg" and g.attrs["options"]["jpeg_quality"] == 90
    assert "jpeg_quality" not in r.attrs["options"]  # raw stores keep the options they always had
    size = lambda p: sum(f.stat().st_size for f in (p / "frames").rglob("*") if f.is_file())  # noqa: E731
    assert size(out) < 0.5 * size(raw)
    assert _psnr(g["frames"][:], r["frames"][:]) > 30
    assert np.array_equal(g["poses/keypoints"][:], r["poses/keypoints"][:])  # only the images are lossy


def test_training_samples_come_from_a_jpeg_store(jpeg_store):
    out, raw = jpeg_store
    spec = ClipSpec(frames=4, stride=2, future_frames=4, max_iframes=2)
    a = ClipDataset(StoreReader(out), split="train", spec=spec)[(0, 7)]
    b = ClipDataset(StoreReader(raw), split="train", spec=spec)[(0, 7)]
    for key in ("clip", "future_clip", "iframes"):
        if key in a:
            assert a[key].shape == b[key].shape and a[key].dtype == b[key].dtype, key
            assert _psnr(a[key].numpy(), b[key].numpy()) > 28, key
    assert a["clip"].abs().sum() > 0


def test_a_damaged_jpeg_chunk_names_the_array_and_rows(jpeg_store, tmp_path):
    import shutil

    out, _ = jpeg_store
    copy = tmp_path / "damaged.zarr"
    shutil.copytree(out, copy)
    shard = next(p for p in sorted((copy / "frames").rglob("*")) if p.is_file() and p.name != "zarr.json")
    data = bytearray(shard.read_bytes())
    data[20:400] = b"\x00" * 380  # the first frame's JPEG headers and entropy data
    shard.write_bytes(bytes(data))
    assert any("frames" in p for p in verify_store(str(copy))[0])
    reader = StoreReader(copy, verify_checksums=False, allow_incomplete=True)
    with pytest.raises(StoreReadError, match=r"reading array 'frames' rows"):
        ClipDataset(reader, split=None, spec=ClipSpec(frames=30, stride=1, future_frames=0, max_iframes=0))[(0, 0)]


def test_transcoding_a_raw_store_gives_the_store_preprocessing_writes(jpeg_store, tmp_path):
    from csvr.preprocess.schema import StoreError
    from csvr.preprocess.transcode import transcode_store

    out, raw = jpeg_store
    dst = tmp_path / "t.zarr"
    summary = transcode_store(raw, dst, "jpeg", 90, progress=False)
    assert summary["image_bytes_after"] < 0.5 * summary["image_bytes_before"]
    assert verify_store(str(dst))[0] == []
    a, b = zarr.open_group(str(dst), mode="r"), zarr.open_group(str(out), mode="r")
    for name in ("frames", "iframes/images", "poses/keypoints", "poses/main_actor", "iframes/frame_index"):
        assert np.array_equal(a[name][:], b[name][:]), name  # same pixels as encoding while preprocessing
    assert a.attrs["options"]["codec"] == "jpeg" and a.attrs["complete"] is True
    assert a.attrs["transcoded_from"]["store"] == str(raw)
    with pytest.raises(StoreError, match="exists; pass --overwrite"):
        transcode_store(raw, dst, "jpeg", 90, progress=False)
    back = transcode_store(dst, tmp_path / "back.zarr", "none", progress=False)  # lossy -> raw keeps the lossy pixels
    assert "jpeg_quality" not in zarr.open_group(back["dst"], mode="r").attrs["options"]
    assert np.array_equal(zarr.open_group(back["dst"], mode="r")["frames"][:], a["frames"][:])
