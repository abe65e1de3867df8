"""Store writer: array creation (chunks, shards, compressor), whole-shard writes with checksums, tables.

Every write here covers whole shards and happens in exactly one task per shard: Zarr v3 sharding loses
data when two writers touch one shard. A shard's file is deleted before it is rewritten, so a shard
left half-written by a killed run is never read back as data.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import posixpath
from dataclasses import dataclass
from typing import Any

import numpy as np

from csvr.contracts import shard_key  # noqa: F401  (re-exported: the writer names shards by it)
from csvr.preprocess.schema import FRAME_ARRAYS, IFRAME_ARRAYS, VIDEO_COLUMNS, array_specs

log = logging.getLogger(__name__)

FRAME_CHUNK = 1  # frames per chunk: a clip reads and decodes exactly its frames (loader 1.4-3x faster than 32)
POSE_CHUNK = 256  # pose rows per chunk (204 B/row for P=2): ~52 kB chunks, one or two per clip
IFRAME_CHUNK = 1  # I-frames per chunk: a sample decodes only the I-frames it uses
DEFAULT_SHARD_FRAMES = 4096  # rows per shard: ~270 MB raw frames, ~60-120 MB compressed at 128x171


def compressor(name: str = "lz4"):
    """Blosc codec by short name (chosen by measurement: see docs/store.md)."""
    from zarr.codecs import BloscCodec

    if name == "lz4":
        return BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle")
    if name == "zstd":
        return BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")
    if name == "lz4-bitshuffle":
        return BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")
    if name == "none":
        return None
    raise ValueError(f"unknown compressor {name!r} (lz4, lz4-bitshuffle, zstd, none)")


FRAME_CODECS = ("none", "lz4", "lz4-bitshuffle", "zstd", "jpeg")


def frame_codecs(codec: str = "none", jpeg_quality: int = 90) -> dict[str, Any]:
    """`create_array` keywords of the frame arrays: a lossless Blosc compressor by short name, or `jpeg`, the
    lossy per-frame `csvr.jpeg` serializer (csvr/codecs.py) at `jpeg_quality`."""
    if codec == "jpeg":
        from csvr.codecs import JpegCodec

        return {"serializer": JpegCodec(quality=jpeg_quality), "compressors": None}
    if codec not in FRAME_CODECS:
        raise ValueError(f"unknown frame codec {codec!r} (one of {', '.join(FRAME_CODECS)})")
    return {"compressors": compressor(codec)}


@dataclass(frozen=True)
class Layout:
    """Chunk and shard rows of every array (leading axis); other axes are never split."""

    shard_frames: int = DEFAULT_SHARD_FRAMES
    shard_iframes: int = DEFAULT_SHARD_FRAMES // 4

    def __post_init__(self) -> None:
        if self.shard_frames % FRAME_CHUNK or self.shard_frames <= 0:
            raise ValueError(f"shard_frames must be a positive multiple of {FRAME_CHUNK}")
        if self.shard_iframes % IFRAME_CHUNK or self.shard_iframes <= 0:
            raise ValueError(f"shard_iframes must be a positive multiple of {IFRAME_CHUNK}")

    def chunk_rows(self, name: str) -> int:
        if name == "frames":
            return FRAME_CHUNK
        if name.startswith("poses/"):
            return POSE_CHUNK if self.shard_frames % POSE_CHUNK == 0 else self.shard_frames
        if name == "iframes/images":
            return IFRAME_CHUNK
        return self.shard_iframes  # small 1-D I-frame columns: one chunk per shard

    def shard_rows(self, name: str) -> int:
        return self.shard_frames if name in FRAME_ARRAYS else self.shard_iframes

    def as_dict(self) -> dict[str, int]:
        return {"shard_frames": self.shard_frames, "shard_iframes": self.shard_iframes}


def num_shards(rows: int, shard_rows: int) -> int:
    return max(0, math.ceil(rows / shard_rows))


def create_arrays(group: Any, F: int, I: int, frame_size: tuple[int, int], max_people: int,
                  layout: Layout, codec: str, jpeg_quality: int = 90) -> None:
    """Create (overwriting) every frame- and I-frame-aligned array with its chunk/shard layout; `codec` is
    the frame arrays' (`frame_codecs`), every other array is zstd-compressed."""
    fill = {"poses/main_actor": -1}
    for name, (row, dtype) in array_specs(frame_size, max_people).items():
        rows = F if name in FRAME_ARRAYS else I
        shard = layout.shard_rows(name)
        chunk = layout.chunk_rows(name)
        codecs = (frame_codecs(codec, jpeg_quality) if name in ("frames", "iframes/images")
                  else {"compressors": compressor("zstd")})
        group.create_array(
            name, shape=(rows, *row), dtype=dtype, chunks=(chunk, *row), shards=(shard, *row),
            fill_value=fill.get(name, 0), overwrite=True, **codecs,
        )


def normalize_url(out: Any) -> str:
    """A store location as zarr and fsspec both accept it: ``file://`` URLs become local paths."""
    text = str(out)
    if text.startswith("file://"):
        return text[len("file://"):]
    return text


class FS:
    """fsspec file system rooted at the store URL, with atomic small-file writes for markers."""

    def __init__(self, url: str):
        import fsspec

        self.url = normalize_url(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def path(self, key: str) -> str:
        return posixpath.join(self.root, key)

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def read_bytes(self, key: str) -> bytes:
        return self.fs.cat_file(self.path(key))

    def write_atomic(self, key: str, data: bytes) -> None:
        """Write to a temporary name and rename: the final name exists only with complete content."""
        final = self.path(key)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        tmp = final + ".tmp"
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
        self.fs.mv(tmp, final)

    def write_json(self, key: str, obj: Any) -> None:
        self.write_atomic(key, json.dumps(obj, sort_keys=True).encode())

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    def rm(self, key: str, recursive: bool = False) -> None:
        p = self.path(key)
        if self.fs.exists(p):
            self.fs.rm(p, recursive=recursive)

    def ls(self, key: str) -> list[str]:
        p = self.path(key)
        if not self.fs.exists(p):
            return []
        return sorted(posixpath.basename(x.rstrip("/")) for x in self.fs.ls(p, detail=False))

    def size(self, key: str) -> int:
        return int(self.fs.size(self.path(key)))

    def du(self, key: str = "") -> int:
        p = self.path(key) if key else self.root
        return int(self.fs.du(p, total=True)) if self.fs.exists(p) else 0


def save_npz(fs: FS, key: str, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    fs.write_atomic(key, buf.getvalue())


def load_npz(fs: FS, key: str, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Arrays of a staged ``.npz`` (only ``names`` when given)."""
    with fs.fs.open(fs.path(key), "rb") as f, np.load(f) as z:
        return {k: z[k] for k in (names if names is not None else z.files)}


def sha256_or_absent(fs: FS, key: str) -> str:
    """sha256 of a shard file, or "absent" (zarr writes no file for an all-fill-value shard)."""
    if not fs.exists(key):
        return "absent"
    return hashlib.sha256(fs.read_bytes(key)).hexdigest()


def write_shard(group: Any, fs: FS, name: str, index: int, start: int, data: np.ndarray) -> str:
    """Write rows ``[start, start+len(data))`` = shard ``index`` of array ``name``; return its checksum."""
    arr = group[name]
    key = shard_key(name, index, arr.ndim)
    fs.rm(key)  # never merge into a shard left half-written by a killed run
    if len(data):
        arr[start:start + len(data)] = data
    return sha256_or_absent(fs, key)


def write_table(group: Any, columns: dict[str, list]) -> None:
    """Write the per-video table, one 1-D array per column under ``videos/``."""
    n = len(columns["id"])
    for col, dt in VIDEO_COLUMNS.items():
        values = columns[col]
        if len(values) != n:
            raise ValueError(f"column {col} has {len(values)} rows, expected {n}")
        if dt == "str":
            a = group.create_array(f"videos/{col}", shape=(n,), dtype=str, chunks=(max(n, 1),),
                                   overwrite=True)
            if n:
                a[:] = np.asarray([str(v) for v in values], dtype=object)
        else:
            a = group.create_array(f"videos/{col}", shape=(n,), dtype=dt, chunks=(max(n, 1),),
                                   overwrite=True)
            if n:
                a[:] = np.asarray(values, dtype=dt)


__all__ = [
    "FRAME_ARRAYS", "IFRAME_ARRAYS", "Layout", "FS", "compressor", "create_arrays", "shard_key",
    "write_shard", "write_table", "save_npz", "load_npz", "num_shards", "sha256_or_absent",
]
