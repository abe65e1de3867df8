"""preprocess.video: decode/resize, I-frame positions (native, re-encode), bad-file reasons."""

from __future__ import annotations

import numpy as np
import pytest

from csvr.preprocess.video import VideoError, decode_video, native_iframes, pose_size
from preprocess_testdata import reencode_mpeg4, reencoded_iframes
from preprocess_testdata import write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    p = tmp_path_factory.mktemp("vid") / "clip.avi"
    centres = write_video(p, frames=30, size=(64, 48), gop=10)
    return p, centres


def test_decode_resize_and_step(clip):
    p, centres = clip
    d = decode_video(p, frame_size=(32, 40), frame_step=3, pose_cap=320)
    assert d.frames.shape == (10, 32, 40, 3) and d.frames.dtype == np.uint8
    assert d.pose_frames.shape == (10, 48, 64, 3)  # never upscaled
    assert d.source_indices.tolist() == list(range(0, 30, 3))
    assert (d.width, d.height, d.source_frames) == (64, 48, 30) and d.fps == pytest.approx(25)
    # the yellow square moves right: its column in the resized frame follows the source centre
    for k, src in enumerate(d.source_indices):
        mask = (d.frames[k, :, :, 0] > 180) & (d.frames[k, :, :, 2] < 100)
        col = np.nonzero(mask)[1].mean() + 0.5
        assert abs(col * 64 / 40 - centres[src, 0]) < 3


def test_native_iframes_positioned_from_pts(clip):
    p, _ = clip
    d = decode_video(p, frame_size=(32, 40))
    ifr = native_iframes(p, (32, 40), pts=d.pts)
    assert ifr.source_index.tolist() == [0, 10, 20]
    assert ifr.pict_type.tolist() == [1, 1, 1]
    # the I-frame image is the decoded frame at that position
    assert np.abs(ifr.images[1].astype(int) - d.frames[10].astype(int)).mean() < 1
    # without the pts list, positions come from pts * time_base * fps
    assert native_iframes(p, (32, 40)).source_index.tolist() == [0, 10, 20]


@pytest.mark.parametrize("gop", [4, 12])
def test_reencode_gop(clip, gop):
    p, _ = clip
    d = decode_video(p, frame_size=(32, 40), keep_source=True)
    ifr = reencoded_iframes(d, gop, (32, 40))
    assert ifr.source_index.tolist() == list(range(0, 30, gop))
    assert np.abs(ifr.images[1].astype(int) - d.frames[gop].astype(int)).mean() < 6
    data = reencode_mpeg4(d.extra["source"], d.width, d.height, gop)
    assert data[:4] == b"RIFF"  # an AVI with MPEG-4 Part 2 inside


def test_reencode_needs_source(clip):
    d = decode_video(clip[0], frame_size=(32, 40))
    with pytest.raises(ValueError, match="keep_source"):
        reencoded_iframes(d, 12)


def test_pose_size():
    assert pose_size(480, 640, 320) == (240, 320)
    assert pose_size(240, 320, 320) == (240, 320)
    assert pose_size(100, 50, 320) == (100, 50)
    assert pose_size(1080, 1920, 320) == (180, 320)


def test_bad_files(tmp_path):
    z = tmp_path / "z.avi"
    z.write_bytes(b"")
    with pytest.raises(VideoError, match="zero-byte"):
        decode_video(z)
    t = tmp_path / "t.avi"
    t.write_text("hello " * 100)
    with pytest.raises(VideoError, match="cannot open"):
        decode_video(t)
    with pytest.raises(VideoError, match="not a file"):
        decode_video(tmp_path / "missing.avi")


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_fast_native_extraction_equals_decode_pict_types(tmp_path, codec):
    """The packet-filtered skip_frame path finds exactly the frames the full decode reports as I."""
    p = tmp_path / f"c_{codec}.mkv"
    write_video(p, frames=40, size=(64, 48), gop=7, codec=codec)
    d = decode_video(p, frame_size=(32, 40), frame_step=2, collect_iframes=True)
    full = d.extra["iframes"]
    fast = native_iframes(p, (32, 40), pts=d.pts)
    assert full.source_index.tolist() == fast.source_index.tolist()
    assert full.source_index.tolist()[:3] == [0, 7, 14]
    assert np.array_equal(full.images, fast.images)
    # odd I-frame positions (not kept with frame_step=2) still get their image
    assert full.images.shape == (len(full.source_index), 32, 40, 3)


def test_may_be_intra_mpeg4_headers():
    from csvr.preprocess.video import may_be_intra

    assert may_be_intra("mpeg4", b"\x00\x00\x01\xb6\x10rest", False)  # coding type 00 = I
    assert not may_be_intra("mpeg4", b"\x00\x00\x01\xb6\x50rest", False)  # 01 = P
    assert may_be_intra("mpeg4", b"\x00\x00\x01\xb6\x50rest", True)  # key flag wins
    assert may_be_intra("vp9", b"anything", False)  # unknown codec: let the decoder filter
