"""Write tiny stores that follow the `csvr-store/1` contract exactly, with content that encodes indices.

Used by the loader's tests (and usable by other stages' tests) so that the reader side can be tested
without running preprocessing. Every stored pixel tells where it came from:

- channel 0 = the frame's index inside its video modulo 256,
- channel 1 = the video's row in the store's video table,
- channel 2 = the pixel's column (x) modulo 256.

Poses are deterministic functions of (video, frame, joint); a few joints are missing on purpose
(confidence 0) and the main actor is absent (-1) on a few frames, so the visibility logic is exercised.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCHEMA = "csvr-store/1"


@dataclass
class FakeVideo:
    """One video of a fake store: its length in stored frames, label, split and I-frame positions."""

    num_frames: int
    label: int = 0
    split1: str = "train"
    iframes: list[int] | None = None  # stored-frame indices; None -> every `gop` frames
    status: str = "ok"


@dataclass
class FakeStoreSpec:
    """What to write; defaults give a handful of short videos at the contract's default frame size."""

    videos: list[FakeVideo] = field(
        default_factory=lambda: [
            FakeVideo(150, 0, "train"),
            FakeVideo(140, 1, "train"),
            FakeVideo(40, 0, "train", iframes=[0]),  # shorter than 32x4 frames, one I-frame
            FakeVideo(160, 1, "test"),
            FakeVideo(0, 1, "train", status="failed"),
            FakeVideo(150, 0, "test"),
        ]
    )
    frame_size: tuple[int, int] = (128, 171)
    gop: int = 12
    people: int = 2
    chunk_frames: int = 4
    shard_frames: int = 64
    complete: bool = True
    schema: str = SCHEMA
    frame_step: int = 1


def fake_pixel(video_row: int, local_frame: int, width: int) -> np.ndarray:
    """The (W, 3) row pattern of a frame of the fake store (identical on every image row)."""
    row = np.empty((width, 3), np.uint8)
    row[:, 0] = local_frame % 256
    row[:, 1] = video_row % 256
    row[:, 2] = np.arange(width) % 256
    return row


def fake_keypoints(video_row: int, local_frames: np.ndarray, people: int) -> np.ndarray:
    """Deterministic keypoints (n, P, 17, 3): person p, joint j at x = 0.1 + 0.04 j + 0.001 f."""
    n = len(local_frames)
    kp = np.zeros((n, people, 17, 3), np.float32)
    j = np.arange(17)[None, :]
    f = local_frames[:, None].astype(np.float32)
    for p in range(people):
        kp[:, p, :, 0] = 0.1 + 0.04 * j + 0.001 * f + 0.01 * p
        kp[:, p, :, 1] = 0.2 + 0.03 * j + 0.002 * (f % 50) + 0.01 * video_row
        kp[:, p, :, 2] = 0.9
    # joint 3 (left ear) missing on frames where f % 7 == 3: short gaps for the interpolation
    kp[(local_frames % 7) == 3, :, 3, :] = 0.0
    return kp


def fake_main_actor(local_frames: np.ndarray) -> np.ndarray:
    """Main actor index per frame: person 0, except person 1 on f % 30 in 10..11 and none (-1) on f % 50 == 25."""
    ma = np.zeros(len(local_frames), np.int8)
    ma[np.isin(local_frames % 30, (10, 11))] = 1
    ma[(local_frames % 50) == 25] = -1
    return ma


def write_fake_store(path: str | Path, spec: FakeStoreSpec | None = None) -> Path:
    """Write a contract-conformant zarr v3 store to `path` and return it."""
    import zarr
    from zarr.codecs import BloscCodec

    spec = spec or FakeStoreSpec()
    path = Path(path)
    h, w = spec.frame_size
    vids = spec.videos
    num = np.array([v.num_frames if v.status == "ok" else 0 for v in vids], np.int64)
    starts = np.concatenate([[0], np.cumsum(num)[:-1]]).astype(np.int64)
    iframe_lists = [
        (list(range(0, v.num_frames, spec.gop)) if v.iframes is None else list(v.iframes))
        if v.status == "ok" else []
        for v in vids
    ]
    n_if = np.array([len(x) for x in iframe_lists], np.int64)
    if_starts = np.concatenate([[0], np.cumsum(n_if)[:-1]]).astype(np.int64)
    total, total_if = int(num.sum()), int(n_if.sum())

    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    comp = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")
    shard = max(spec.shard_frames, spec.chunk_frames)
    frames = g.create_array("frames", shape=(total, h, w, 3), dtype="uint8",
                            chunks=(spec.chunk_frames, h, w, 3), shards=(shard, h, w, 3),
                            compressors=comp)
    kp = g.create_array("poses/keypoints", shape=(total, spec.people, 17, 3), dtype="float16",
                        chunks=(shard, spec.people, 17, 3), compressors=comp)
    boxes = g.create_array("poses/boxes", shape=(total, spec.people, 5), dtype="float16",
                           chunks=(shard, spec.people, 5), compressors=comp)
    ma = g.create_array("poses/main_actor", shape=(total,), dtype="int8", chunks=(max(total, 1),))
    iimg = g.create_array("iframes/images", shape=(total_if, h, w, 3), dtype="uint8",
                          chunks=(1, h, w, 3), shards=(max(16, 1), h, w, 3), compressors=comp)
    ifi = g.create_array("iframes/frame_index", shape=(total_if,), dtype="int32", chunks=(max(total_if, 1),))
    isi = g.create_array("iframes/source_index", shape=(total_if,), dtype="int32", chunks=(max(total_if, 1),))
    ipt = g.create_array("iframes/pict_type", shape=(total_if,), dtype="uint8", chunks=(max(total_if, 1),))

    all_frames = np.empty((total, h, w, 3), np.uint8)
    all_kp = np.zeros((total, spec.people, 17, 3), np.float32)
    all_ma = np.zeros(total, np.int8)
    all_if = np.empty((total_if, h, w, 3), np.uint8)
    all_ifi = np.zeros(total_if, np.int32)
    for row, v in enumerate(vids):
        if v.status != "ok":
            continue
        local = np.arange(v.num_frames)
        s = int(starts[row])
        for f in local:
            all_frames[s + f] = fake_pixel(row, int(f), w)[None]
        all_kp[s:s + v.num_frames] = fake_keypoints(row, local, spec.people)
        all_ma[s:s + v.num_frames] = fake_main_actor(local)
        for k, fi in enumerate(iframe_lists[row]):
            all_if[if_starts[row] + k] = fake_pixel(row, fi, w)[None]
            all_ifi[if_starts[row] + k] = fi
    if total:
        frames[:] = all_frames
        kp[:] = all_kp.astype(np.float16)
        boxes[:] = np.full((total, spec.people, 5), 0.5, np.float16)
        ma[:] = all_ma
    if total_if:
        iimg[:] = all_if
        ifi[:] = all_ifi
        isi[:] = all_ifi * spec.frame_step
        ipt[:] = 1

    def col(name: str, values, dtype) -> None:
        arr = g.create_array(f"videos/{name}", shape=(len(vids),), dtype=dtype, chunks=(len(vids),))
        arr[:] = np.asarray(values, dtype=None if dtype is str else dtype)

    col("id", [f"v{r:03d}" for r in range(len(vids))], str)
    col("path", [f"Class{v.label}/v_{r:03d}.avi" for r, v in enumerate(vids)], str)
    col("label", [v.label for v in vids], "int32")
    col("label_name", [f"Class{v.label}" for v in vids], str)
    col("split1", [v.split1 for v in vids], str)
    col("split2", ["" for _ in vids], str)
    col("split3", ["" for _ in vids], str)
    col("fps", [25.0 for _ in vids], "float32")
    col("width", [320 for _ in vids], "int32")
    col("height", [240 for _ in vids], "int32")
    col("source_frames", [v.num_frames * spec.frame_step for v in vids], "int32")
    col("num_frames", num, "int64")
    col("frame_start", starts, "int64")
    col("num_iframes", n_if, "int64")
    col("iframe_start", if_starts, "int64")
    col("status", [v.status for v in vids], str)
    col("reason", ["" if v.status == "ok" else "fake failure" for v in vids], str)

    labels = sorted({v.label for v in vids})
    g.attrs.update({
        "schema": spec.schema,
        "complete": spec.complete,
        "dataset": "fake",
        "manifest_sha256": "0" * 64,
        "options": {"frame_size": list(spec.frame_size), "frame_step": spec.frame_step, "root": str(path.parent),
                    "iframe_policy": "reencode", "gop": spec.gop, "max_people": spec.people},
        "pose_model": {"name": "fake", "weights_sha256": None},
        "iframe_policy": {"policy": "reencode", "gop": spec.gop},
        "frame_size": list(spec.frame_size),
        "classes": [f"Class{i}" for i in range(max(labels) + 1)],
        "versions": {"zarr": zarr.__version__},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "summary": {"videos": len(vids), "ok": int(sum(v.status == "ok" for v in vids)), "frames": total},
    })
    return path
