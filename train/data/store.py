"""Read-only access to a `csvr-store/1` Zarr store for the training input side.

The store is validated once where the reader is built: schema, completeness, required arrays, the per-video
table against its recorded checksum and the arrays' extents, and every shard the writer recorded as written
present with its recorded size (optionally its recorded sha256: `verify_checksums`). The video table and the
small per-I-frame index are held in memory. A failed read raises `StoreReadError` naming the array, the
shard file(s), the rows and the videos. The Zarr group itself is opened lazily,
on first read, in whichever process reads: a `StoreReader` pickles without any open handle, so each
DataLoader worker opens its own. Reads touch only the chunks that hold the requested rows.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from csvr.contracts import (SCHEMA, STORED_STATUSES,  # noqa: F401  (SCHEMA re-exported by train.data)
                             VIDEO_COLUMNS, StoreError, open_store, sha256_file, shard_key,
                             table_sha256)

log = logging.getLogger(__name__)


# name -> (ndim, dtype kind) checked at open time
REQUIRED_ARRAYS: dict[str, tuple[int, str]] = {
    "frames": (4, "u"),
    "poses/keypoints": (4, "f"),
    "poses/main_actor": (1, "i"),
    "iframes/images": (4, "u"),
    "iframes/frame_index": (1, "i"),
}
REQUIRED_COLUMNS = ("id", "path", "label", "num_frames", "frame_start", "num_iframes", "iframe_start", "status")
OPTIONAL_COLUMNS = ("label_name", "split1", "split2", "split3", "fps", "width", "height", "source_frames", "reason")
READ_MODES = ("index", "range", "auto")


class StoreReadError(StoreError):
    """A read of stored rows failed (an undecodable or damaged shard); the message names the array, the
    shard file(s), the rows and the videos they belong to."""


@dataclass(frozen=True)
class VideoTable:
    """The store's per-video table, one numpy array per column (strings as Python `str` objects)."""

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["id"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def rows_in_split(self, split: str | None, split_index: int = 1,
                      statuses: tuple[str, ...] = STORED_STATUSES) -> np.ndarray:
        """Rows of readable videos (a status in `statuses`, at least one frame) of `split` ("train"/"test";
        None = all)."""
        ok = np.isin(self["status"], list(statuses)) & (self["num_frames"] > 0)
        if split is not None:
            col = f"split{split_index}"
            if col not in self.columns:
                raise StoreError(f"the store's video table has no column {col!r} (split_index={split_index})")
            ok &= self[col] == split
        return np.flatnonzero(ok)


def _as_str(values: np.ndarray) -> np.ndarray:
    return np.array([str(v) for v in values.tolist()], dtype=object)


def open_group(path: str | Path, allow_incomplete: bool = False) -> Any:
    """Open a store read-only and validate it; raises `StoreError` naming the store and the problem."""
    spath = str(path)
    group = open_store(spath, allow_incomplete=allow_incomplete)
    if not group.attrs.get("complete", False):
        log.warning("reading incomplete store %s (allow_incomplete=True)", spath)
    for name, (ndim, kind) in REQUIRED_ARRAYS.items():
        try:
            arr = group[name]
        except KeyError:
            raise StoreError(f"store {spath}: required array {name!r} is missing") from None
        if len(arr.shape) != ndim or np.dtype(arr.dtype).kind != kind:
            raise StoreError(f"store {spath}: array {name!r} has shape {arr.shape} dtype {arr.dtype}, "
                             f"expected {ndim} dims of kind {kind!r}")
    fr, im = group["frames"], group["iframes/images"]
    if fr.shape[-1] != 3 or tuple(im.shape[1:]) != tuple(fr.shape[1:]):
        raise StoreError(f"store {spath}: frames {fr.shape} and iframes/images {im.shape} disagree")
    if group["poses/keypoints"].shape[0] != fr.shape[0] or group["poses/main_actor"].shape[0] != fr.shape[0]:
        raise StoreError(f"store {spath}: poses and frames have different numbers of rows")
    return group


def _limit_codec_threads_in_worker() -> None:
    """In a DataLoader worker, decode with one Blosc thread (as torch does): workers are the parallelism.

    Measured: 2 Blosc threads per worker on a 2-core machine made a clip read ~1.4x slower.
    """
    from torch.utils.data import get_worker_info

    if get_worker_info() is not None:
        from numcodecs import blosc

        blosc.set_nthreads(1)


class StoreReader:
    """Validated, picklable, lazily opened read access to one store.

    `read_mode` chooses how a set of rows is fetched: "index" (a Zarr orthogonal selection of exactly
    those rows), "range" (one contiguous slice from the first to the last row, then a numpy take) or
    "auto" (one slice per run of nearby rows: a wrapped short-video clip becomes two slices). Measured
    (docs/loader.md): Zarr 3.1's orthogonal selection on a sharded array costs ~10-20x a slice covering
    the same chunks, so "auto" slices; either way only the chunks that hold the rows are decoded.
    `direct=True` (default) reads local arrays with `fastchunks.DirectChunkReader` (same bytes, same
    codecs, no zarr-python call overhead) wherever it understands the layout; "index" mode and remote
    stores always go through zarr-python. `mmap=True` (default; off with `allow_incomplete`) lets it
    decompress inner chunks straight out of read-only memory maps of the shard files.
    """

    def __init__(self, path: str | Path, *, allow_incomplete: bool = False, read_mode: str = "auto",
                 direct: bool = True, mmap: bool = True, verify_checksums: bool = False) -> None:
        if read_mode not in READ_MODES:
            raise ValueError(f"read_mode must be one of {READ_MODES}, got {read_mode!r}")
        self.path = str(path)
        self.allow_incomplete = allow_incomplete
        self.read_mode = read_mode
        self.direct = direct
        self.mmap = mmap
        group = open_group(self.path, allow_incomplete)
        self.attrs: dict[str, Any] = dict(group.attrs)
        self.videos = self._read_table(group)
        frames = group["frames"]
        self.num_rows = int(frames.shape[0])
        self.frame_size: tuple[int, int] = (int(frames.shape[1]), int(frames.shape[2]))
        self.frame_nbytes = int(np.prod(frames.shape[1:]))
        self.shard_rows = int((frames.shards or frames.chunks)[0])
        self.chunk_rows = int(frames.chunks[0])
        self.people = int(group["poses/keypoints"].shape[1])
        self.frame_step = int((self.attrs.get("options") or {}).get("frame_step", 1) or 1)
        self.iframe_frame_index = np.asarray(group["iframes/frame_index"][:], dtype=np.int64)
        # the videos training and evaluation use: `degraded` ones too unless preprocessing said otherwise
        use_degraded = (self.attrs.get("options") or {}).get("use_degraded", True)
        self.usable_statuses: tuple[str, ...] = STORED_STATUSES if use_degraded else ("ok",)
        self._check_table()
        self.shard_rows_of: dict[str, int] = {}
        self._check_recorded(group, verify_checksums)
        self._arrays: dict[str, Any] = {}
        self._direct: dict[str, Any] = {}
        self._setup_pid = -1

    # -- construction helpers -------------------------------------------------------------------
    def _read_table(self, group: Any) -> VideoTable:
        cols: dict[str, np.ndarray] = {}
        for name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            try:
                arr = group[f"videos/{name}"]
            except KeyError:
                if name in REQUIRED_COLUMNS:
                    raise StoreError(f"store {self.path}: video table column 'videos/{name}' is missing") from None
                continue
            values = np.asarray(arr[:])
            cols[name] = _as_str(values) if values.dtype.kind in "USOT" else values
        lengths = {k: len(v) for k, v in cols.items()}
        if len(set(lengths.values())) != 1:
            raise StoreError(f"store {self.path}: video table columns differ in length: {lengths}")
        for k in ("num_frames", "frame_start", "num_iframes", "iframe_start", "label"):
            cols[k] = cols[k].astype(np.int64)
        return VideoTable(cols)

    def _check_table(self) -> None:
        v = self.videos
        ok = np.isin(v["status"], list(STORED_STATUSES))
        end = v["frame_start"] + v["num_frames"]
        if ok.any() and int(end[ok].max()) > self.num_rows:
            bad = int(np.flatnonzero(ok & (end > self.num_rows))[0])
            raise StoreError(f"store {self.path}: video {v['id'][bad]} rows end at {end[bad]} beyond "
                             f"frames ({self.num_rows} rows)")
        iend = v["iframe_start"] + v["num_iframes"]
        if ok.any() and int(iend[ok].max()) > len(self.iframe_frame_index):
            raise StoreError(f"store {self.path}: I-frame table rows exceed iframes/frame_index")

    def _check_recorded(self, group: Any, verify_checksums: bool) -> None:
        """The table against its recorded checksum; every recorded shard present with its recorded size
        (and sha256 when `verify_checksums`). Stores written before a record existed skip that check."""
        want = self.attrs.get("table_sha256")
        if want is not None and all(c in self.videos.columns for c in VIDEO_COLUMNS):
            got = table_sha256(self.videos.columns)
            if got != want:
                raise StoreError(f"store {self.path}: per-video table checksum mismatch (recorded {want[:12]}, "
                                 f"found {got[:12]}): labels, splits, paths or offsets changed since the store was "
                                 f"written; `csvr shards verify {self.path}` lists the damage")
        local = "://" not in self.path
        for name in REQUIRED_ARRAYS:
            arr = group[name]
            rows = int((arr.shards or arr.chunks)[0])
            self.shard_rows_of[name] = rows
            sums = arr.attrs.get("shard_sha256")
            if sums is None or not local:
                continue
            sizes = arr.attrs.get("shard_bytes") or {}
            for k in range((arr.shape[0] + rows - 1) // rows):
                digest = sums.get(str(k))
                lo, hi = k * rows, min(arr.shape[0], (k + 1) * rows)
                where = f"array {name!r} shard {k} ({Path(self.path) / shard_key(name, k, arr.ndim)}), {self._span(name, lo, hi)}"
                if digest is None:
                    if self.allow_incomplete:
                        continue
                    raise StoreError(f"store {self.path}: {where} has no record of being written")
                if digest == "absent":
                    continue
                f = Path(self.path) / shard_key(name, k, arr.ndim)
                if not f.is_file():
                    raise StoreError(f"store {self.path}: {where} is recorded as written but its file is missing "
                                     "(it would read as fill values)")
                size, want_size = f.stat().st_size, sizes.get(str(k))
                if want_size is not None and size != int(want_size):
                    raise StoreError(f"store {self.path}: {where} is {size} bytes, recorded {want_size}: truncated "
                                     "or replaced after it was written")
                if verify_checksums and sha256_file(f) != digest:
                    raise StoreError(f"store {self.path}: {where} checksum mismatch (recorded {digest[:12]}): "
                                     "changed after it was written")

    def _span(self, name: str, lo: int, hi: int) -> str:
        """'rows lo..hi-1 (videos a, b, ...)' for rows [lo, hi) of array `name`."""
        v = self.videos
        if name.startswith("iframes/"):
            start, count = v["iframe_start"], v["num_iframes"]
        else:
            start, count = v["frame_start"], v["num_frames"]
        hit = np.flatnonzero(np.isin(v["status"], list(STORED_STATUSES)) & (count > 0) & (start < hi) & (start + count > lo))
        ids = [str(v["id"][i]) for i in hit[:3]] + ([f"and {len(hit) - 3} more"] if len(hit) > 3 else [])
        return f"rows {lo}..{hi - 1} (video{'s' if len(hit) != 1 else ''} {', '.join(ids) or 'none'})"

    def _read_error(self, name: str, rows: list[int] | np.ndarray, exc: Exception) -> StoreReadError:
        rows = np.asarray(rows, dtype=np.int64)
        lo, hi = int(rows.min()), int(rows.max()) + 1
        per = self.shard_rows_of.get(name) or int((self.array(name).shards or self.array(name).chunks)[0])
        ndim = len(self.array(name).shape)
        files = ", ".join(str(Path(self.path) / shard_key(name, int(k), ndim)) for k in np.unique(rows // per))
        return StoreReadError(f"store {self.path}: reading array {name!r} {self._span(name, lo, hi)} from shard "
                              f"file(s) {files} failed: {type(exc).__name__}: {exc}; `csvr shards verify "
                              f"{self.path}` lists the damage")

    # -- pickling: never ship open handles to workers ------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = {}
        state["_direct"] = {}
        state["_setup_pid"] = -1
        return state

    def direct_reader(self, name: str) -> Any:
        """The `DirectChunkReader` of array `name` (None when disabled or the layout is unsupported)."""
        if not self.direct or "://" in self.path:
            return None
        if name not in self._direct:
            from .fastchunks import DirectChunkReader

            if self._setup_pid != os.getpid():  # first direct read in this process (forked workers too)
                _limit_codec_threads_in_worker()
                self._setup_pid = os.getpid()

            # a complete store is no longer written: shards can be memory-mapped (see DirectChunkReader.open)
            self._direct[name] = DirectChunkReader.open(Path(self.path) / name,
                                                        use_mmap=self.mmap and not self.allow_incomplete)
            if self._direct[name] is None:
                log.info("store %s: array %s read through zarr-python (layout not handled directly)",
                         self.path, name)
        return self._direct[name]

    def array(self, name: str) -> Any:
        """The Zarr array `name`, opened on first use in this process."""
        arr = self._arrays.get(name)
        if arr is None:
            import zarr

            if not self._arrays:
                log.debug("opening store %s in process", self.path)
            arr = zarr.open_array(f"{self.path}/{name}" if "://" not in self.path else self.path + "/" + name,
                                  mode="r")
            self._arrays[name] = arr
        return arr

    # -- reads ----------------------------------------------------------------------------------
    def read_rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows `rows` (any order, repeats allowed) of array `name`, reading only the chunks they touch."""
        rows = np.asarray(rows, dtype=np.int64)
        arr = self.array(name)
        if rows.size == 0:
            return np.empty((0, *arr.shape[1:]), dtype=arr.dtype)
        uniq, inverse = np.unique(rows, return_inverse=True)
        lo, hi = int(uniq[0]), int(uniq[-1])
        if lo < 0 or hi >= arr.shape[0]:
            raise IndexError(f"store {self.path}: rows {lo}..{hi} out of range for {name} ({arr.shape[0]} rows)")
        try:
            data = self._read_unique(name, arr, uniq)
        except Exception as exc:  # an undecodable / damaged shard: name it
            raise self._read_error(name, uniq, exc) from exc
        return data if len(uniq) == len(rows) and (uniq == rows).all() else data[inverse]

    def _read_unique(self, name: str, arr: Any, uniq: np.ndarray) -> np.ndarray:
        lo, hi = int(uniq[0]), int(uniq[-1])
        direct = self.direct_reader(name) if self.read_mode != "index" else None
        if direct is not None:
            data = direct.read(uniq)
        elif self.read_mode == "index" and len(uniq) != hi - lo + 1:
            data = arr.oindex[uniq]
        elif self.read_mode == "range":
            data = arr[lo:hi + 1][uniq - lo]
        else:  # auto: one slice per run of rows, runs split where the gap exceeds max(16, 2 chunks)
            max_gap = max(16, 2 * int(arr.chunks[0]))
            cuts = np.flatnonzero(np.diff(uniq) > max_gap) + 1
            parts = [arr[int(r[0]):int(r[-1]) + 1][r - r[0]] for r in np.split(uniq, cuts)]
            data = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return data

    def read_rows_into(self, name: str, rows: list[int] | np.ndarray, out: np.ndarray,
                       window: tuple[slice, slice] | None = None) -> None:
        """Write rows `rows` (any order, repeats allowed) of array `name` into `out`, optionally cropped.

        `window` = (slice over axis 1, slice over axis 2) crops each row (frames: a spatial crop). The
        batched loader path: with the direct reader and 1-frame chunks each chunk is decompressed
        straight into its destination; otherwise the rows are read with `read_rows` and copied.
        """
        rl = [int(r) for r in rows]
        if not rl:
            return
        direct = self.direct_reader(name) if self.read_mode != "index" else None
        n = direct.shape[0] if direct is not None else self.array(name).shape[0]
        if min(rl) < 0 or max(rl) >= n:
            raise IndexError(f"store {self.path}: rows {min(rl)}..{max(rl)} out of range for {name} ({n} rows)")
        if direct is not None:
            try:
                direct.read_into(rl, out, window)
            except Exception as exc:  # an undecodable / damaged shard: name it
                raise self._read_error(name, rl, exc) from exc
            return
        data = self.read_rows(name, np.asarray(rl, dtype=np.int64))
        out[...] = data if window is None else data[:, window[0], window[1]]

    def video_rows(self, video: int) -> tuple[int, int]:
        """(frame_start, num_frames) of video-table row `video`."""
        return int(self.videos["frame_start"][video]), int(self.videos["num_frames"][video])

    def video_iframes(self, video: int) -> tuple[int, np.ndarray]:
        """(iframe_start, stored-frame indices of the video's I-frames, ascending)."""
        s, n = int(self.videos["iframe_start"][video]), int(self.videos["num_iframes"][video])
        return s, self.iframe_frame_index[s:s + n]

    def read_main_actor_pose(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Main-actor keypoints (n, 17, 3) float32 and the main-actor index (n,) for frame rows `rows`.

        Where no main actor was tracked (-1) the keypoints are all zero (confidence 0 = missing).
        """
        kp = self.read_rows("poses/keypoints", rows).astype(np.float32)
        ma = self.read_rows("poses/main_actor", rows).astype(np.int64)
        out = np.zeros((len(rows), 17, 3), np.float32)
        has = (ma >= 0) & (ma < kp.shape[1])
        out[has] = kp[np.flatnonzero(has), ma[has]]
        return out, ma
