"""What the stages agree on about a store, defined once: the schema name, the per-video table's columns,
the table checksum, shard file names, file checksums, atomic local file writes and the JSONL log format.
Every stage imports it; it imports no stage."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SCHEMA = "csvr-store/1"


class StoreError(ValueError):
    """A store that cannot or must not be read or written: missing, incomplete, unknown schema, malformed,
    damaged. The message names the store and the problem."""


# COCO-17 keypoint order (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles) and its
# skeleton: the 19 limbs of the COCO keypoint annotations, 0-based, for every skeleton drawing
NUM_JOINTS = 17
COCO_EDGES: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)

# per-video table: column -> numpy dtype ("str" = variable-length UTF-8)
VIDEO_COLUMNS: dict[str, str] = {
    "id": "str",
    "path": "str",
    "label": "int32",
    "label_name": "str",
    "split1": "str",
    "split2": "str",
    "split3": "str",
    "fps": "float32",
    "width": "int32",
    "height": "int32",
    "source_frames": "int32",
    "num_frames": "int64",
    "frame_start": "int64",
    "num_iframes": "int64",
    "iframe_start": "int64",
    "status": "str",
    "reason": "str",
}


# a video's `status` in the table: `ok` and `degraded` videos have rows in the arrays (degraded: the decoder
# reported damage or frames are missing, with counts in `reason`); `failed` videos have none
STATUSES = ("ok", "degraded", "failed")
STORED_STATUSES = ("ok", "degraded")


def table_sha256(columns: dict[str, Any]) -> str:
    """Checksum of the per-video table's values (every column of ``VIDEO_COLUMNS``, in that order).

    Computed on values, not on the encoded chunks, so the writer (lists of Python values) and every
    reader agree: numbers as little-endian bytes of the column's dtype, strings as UTF-8 JSON.
    """
    h = hashlib.sha256()
    for col, dt in VIDEO_COLUMNS.items():
        values = columns[col]
        h.update(f"{col}:{dt}:{len(values)}\n".encode())
        if dt == "str":
            h.update(json.dumps([str(v) for v in values], ensure_ascii=False).encode("utf-8"))
        else:
            a = np.asarray(values, dtype=np.dtype(dt).newbyteorder("<")) if len(values) else \
                np.zeros(0, np.dtype(dt).newbyteorder("<"))
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(b"\n")
    return h.hexdigest()


def shard_key(name: str, index: int, ndim: int) -> str:
    """Store key of shard ``index`` of array ``name`` (default v3 chunk key encoding, '/' separator)."""
    return posixpath.join(name, "c", *([str(index)] + ["0"] * (ndim - 1)))


def sha256_file(path: str | Path, block: int = 1 << 22) -> str:
    """sha256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write a local file atomically: ``write(tmp)`` fills a temporary file next to ``path`` (same folder,
    so the rename stays on one filesystem), which is fsynced and renamed onto ``path``. ``path`` exists
    only with complete content; on any error the temporary file is removed and ``path`` is untouched.
    Parent folders are created. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """``data`` to ``path`` atomically (see ``atomic_write``)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """``text`` to ``path`` atomically (see ``atomic_write``), encoded with ``encoding``."""
    return atomic_write_bytes(path, text.encode(encoding))


def read_jsonl(path: str | Path, check: Callable[[dict[str, Any]], str | None] | None = None) -> list[dict[str, Any]]:
    """The records of a JSONL file, one JSON object per line (the training log ``log.jsonl`` that train
    writes and evaluate reads is one).

    Blank lines are skipped. A malformed LAST line (a run killed mid-write) is dropped with a warning; a
    malformed line elsewhere, a line that is not a JSON object, or a record for which ``check`` returns a
    message is a ValueError naming the file and line.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    records: list[dict[str, Any]] = []
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if i == last:
                log.warning("%s:%d: dropping truncated last line (%s)", path, i + 1, e.msg)
                continue
            raise ValueError(f"{path}:{i + 1}: not valid JSON ({e.msg})") from e
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{i + 1}: expected a JSON object, got {type(rec).__name__}")
        problem = check(rec) if check is not None else None
        if problem:
            raise ValueError(f"{path}:{i + 1}: {problem}")
        records.append(rec)
    return records


def open_store(url: str | Path, *, allow_incomplete: bool = False, mode: str = "r") -> Any:
    """Open a store (local path or fsspec URL) as a zarr group after checking that it exists, is a Zarr group,
    has schema `SCHEMA` and is `complete` (unless `allow_incomplete`); `StoreError` names the store and the
    problem. Every stage opens stores through this; each then checks what it needs on top."""
    import zarr

    url = str(url)
    if url.startswith("file://"):
        url = url[len("file://"):]
    if "://" not in url and mode == "r" and not Path(url).exists():
        raise StoreError(f"store {url}: no such file or directory")
    try:
        group = zarr.open_group(store=url, mode=mode)
    except Exception as exc:  # zarr raises several types for "not a group"
        raise StoreError(f"store {url}: not a readable Zarr group ({type(exc).__name__}: {exc})") from exc
    schema = group.attrs.get("schema")
    if schema is None:
        raise StoreError(f"store {url}: no 'schema' attribute; not a csvr store")
    if schema != SCHEMA:
        raise StoreError(f"store {url}: unknown schema {schema!r} (expected {SCHEMA!r})")
    if not group.attrs.get("complete", False) and not allow_incomplete:
        raise StoreError(f"store {url}: marked incomplete (preprocessing did not finish); finish it by re-running "
                         "the same preprocess command")
    return group

