"""A direct chunk reader for local Zarr v3 arrays: the loader's hot path without zarr-python's overhead.

Why: zarr-python 3.1 routes every read through its asyncio machinery; for the loader's pattern (a few
chunks per sample, thousands of samples per second) that costs more than decompressing the data
(measured in docs/loader.md). This module reads the same bytes the way the Zarr v3 spec lays them out:
the shard index at the end (or start) of the shard file gives each inner chunk's (offset, nbytes); the
chunk is one `pread` plus one codec decode. It supports exactly the layouts it can prove it understands
(local files, default chunk-key encoding, chunking only along axis 0, `bytes` + optional blosc/zstd
codecs or the lossy `csvr.jpeg` frame codec, optionally inside `sharding_indexed`); anything else makes `DirectChunkReader.open` return None
and the caller falls back to zarr-python. Tests compare it with zarr on every array of a store.
"""

from __future__ import annotations

import json
import mmap
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

_MISSING = 2**64 - 1


def _copy_into(raw: bytes, dest: np.ndarray) -> None:
    dest.reshape(-1).view(np.uint8)[:] = np.frombuffer(raw, np.uint8)


def _inner_decoder(codecs: list[dict[str, Any]], dtype: np.dtype) -> tuple[Any, Any] | None:
    """(decode: bytes -> bytes, decode_into: (bytes, contiguous array) -> None) for a `bytes` (+ one
    compressor) codec chain, or None if unsupported. `decode_into` writes straight into the destination
    (no intermediate buffer)."""
    if codecs and codecs[0].get("name") == "csvr.jpeg" and len(codecs) == 1 and dtype == np.uint8:
        from csvr.codecs import decode_jpeg

        return (lambda b: decode_jpeg(b).tobytes()), (lambda b, dest: decode_jpeg(b, dest.shape[-3:-1], out=dest))
    if not codecs or codecs[0].get("name") != "bytes":
        return None
    endian = (codecs[0].get("configuration") or {}).get("endian", "little")
    if dtype.itemsize > 1 and endian != ("little" if np.little_endian else "big"):
        return None
    rest = codecs[1:]
    if not rest:
        return (lambda b: b), _copy_into
    if len(rest) > 1:
        return None
    name = rest[0].get("name")
    if name == "blosc":
        from numcodecs import blosc

        return blosc.decompress, blosc.decompress
    if name == "zstd":
        from numcodecs import Zstd

        z = Zstd()
        return z.decode, lambda b, dest: z.decode(b, out=dest)
    return None


class DirectChunkReader:
    """Reads rows of one local Zarr v3 array chunked along axis 0 only. Build with `open()`."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.shape = tuple(meta["shape"])
        self.dtype = np.dtype(meta["data_type"])
        self.fill = meta.get("fill_value", 0)
        enc = meta["chunk_key_encoding"]
        self.sep = (enc.get("configuration") or {}).get("separator", "/")
        grid = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
        codecs = meta["codecs"]
        self.sharded = codecs[0]["name"] == "sharding_indexed"
        if self.sharded:
            cfg = codecs[0]["configuration"]
            self.chunk_shape = tuple(cfg["chunk_shape"])
            self.shard_rows = grid[0]
            self.decoders = _inner_decoder(cfg["codecs"], self.dtype)
            self.index_at_end = cfg.get("index_location", "end") == "end"
            idx = cfg.get("index_codecs") or []
            names = [c.get("name") for c in idx]
            self.index_ok = names in (["bytes"], ["bytes", "crc32c"]) and \
                (idx[0].get("configuration") or {}).get("endian", "little") == "little"
            self.index_crc = 4 if "crc32c" in names else 0
        else:
            self.chunk_shape = grid
            self.shard_rows = grid[0]
            self.decoders = _inner_decoder(codecs, self.dtype)
            self.index_ok = True
        self.decode, self.decode_into = self.decoders or (None, None)
        self.uncompressed = self.decode_into is _copy_into  # `bytes` only: a chunk's bytes are its array
        self.chunk_rows = self.chunk_shape[0]
        self.chunks_per_shard = self.shard_rows // self.chunk_rows
        self.row_items = int(np.prod(self.shape[1:], dtype=np.int64))
        self._fds: dict[int, int] = {}
        self._maps: dict[int, tuple[mmap.mmap, memoryview] | None] = {}
        self.use_mmap = False  # set by open(): inner chunks are sliced out of a read-only map of the shard
        self._index: dict[int, np.ndarray | None] = {}
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    @classmethod
    def open(cls, array_dir: str | Path, use_mmap: bool = False) -> DirectChunkReader | None:
        """A reader for the array at `array_dir`, or None when the layout is not one this module handles.

        `use_mmap`: read inner chunks of shards through a read-only memory map of each shard file (no
        `pread` syscall and no copy into a new bytes object per chunk; the decompressor reads the page
        cache directly). Only for stores that are no longer written: a shard file rewritten while mapped
        could fault. Chunks beyond the mapped size fall back to `pread`."""
        path = Path(array_dir)
        if "://" in str(array_dir):
            return None
        try:
            meta = json.loads((path / "zarr.json").read_text())
        except (OSError, ValueError):
            return None
        try:
            if meta.get("zarr_format") != 3 or meta.get("node_type") != "array" or meta.get("storage_transformers"):
                return None
            if meta["chunk_grid"]["name"] != "regular" or meta["chunk_key_encoding"]["name"] != "default":
                return None
            r = cls(path, meta)
        except (KeyError, TypeError, IndexError, ValueError):
            return None
        if r.decoders is None or not r.index_ok or r.dtype.kind not in "uif" or r.shard_rows % r.chunk_rows:
            return None
        if tuple(r.chunk_shape[1:]) != tuple(r.shape[1:]) or (r.sharded and r.shard_rows < r.chunk_rows):
            return None
        r.use_mmap = bool(use_mmap) and r.sharded
        return r

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fds": {}, "_maps": {}, "_index": {}, "_cache": OrderedDict(), "_scratch": None}

    def close(self) -> None:
        for entry in self._maps.values():
            if entry is not None:
                try:
                    entry[1].release()
                    entry[0].close()
                except BufferError:  # a chunk view is still referenced somewhere: the map closes when it goes
                    pass
        self._maps.clear()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._index.clear()  # a later read reopens the shard (and its index)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def _key(self, index: int) -> Path:
        parts = [str(index)] + ["0"] * (len(self.shape) - 1)
        return self.path / ("c" + self.sep + self.sep.join(parts)) if self.sep == "." else \
            self.path.joinpath("c", *parts)

    def _fd(self, index: int) -> int | None:
        fd = self._fds.get(index)
        if fd is None:
            try:
                fd = os.open(self._key(index), os.O_RDONLY)
            except FileNotFoundError:
                return None
            self._fds[index] = fd
        return fd

    def _shard_index(self, shard: int) -> np.ndarray | None:
        if shard in self._index:
            return self._index[shard]
        fd = self._fd(shard)
        idx = None
        if fd is not None:
            n = self.chunks_per_shard * 16 + self.index_crc
            size = os.fstat(fd).st_size
            raw = os.pread(fd, n, size - n if self.index_at_end else 0)
            if len(raw) != n:
                raise OSError(f"{self._key(shard)}: truncated shard index")
            idx = np.frombuffer(raw[:self.chunks_per_shard * 16], dtype="<u8").reshape(-1, 2)
        self._index[shard] = idx
        return idx

    def _map(self, shard: int) -> tuple[mmap.mmap, memoryview] | None:
        fd = self._fds[shard]
        try:
            mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # empty file, no mmap support: pread
            self._maps[shard] = None
            return None
        self._maps[shard] = (mm, memoryview(mm))
        return self._maps[shard]

    def _fill_chunk(self) -> np.ndarray:
        return np.full(self.chunk_shape, self.fill if self.fill is not None else 0, dtype=self.dtype)

    def raw_chunk(self, c: int) -> bytes | memoryview | None:
        """The encoded bytes of chunk `c` (a view into the shard's map with `use_mmap`), or None where
        nothing was written (fill value)."""
        if self.sharded:
            shard, pos = divmod(c, self.chunks_per_shard)
            idx = self._shard_index(shard)
            if idx is None:
                return None
            off, nbytes = idx[pos].tolist()
            if off == _MISSING and nbytes == _MISSING:
                return None
            if self.use_mmap:
                mapped = self._maps.get(shard, False)
                if mapped is False:
                    mapped = self._map(shard)
                if mapped is not None and off + nbytes <= len(mapped[0]):
                    return mapped[1][off:off + nbytes]  # type: ignore[return-value]  # a view, no copy
            raw = os.pread(self._fds[shard], nbytes, off)
            if len(raw) != nbytes:
                raise OSError(f"{self._key(shard)}: short read of chunk {pos}")
            return raw
        fd = self._fd(c)
        return None if fd is None else os.pread(fd, os.fstat(fd).st_size, 0)

    def chunk(self, c: int) -> np.ndarray:
        """Decoded chunk `c` (along axis 0), shape `chunk_shape`; fill value where nothing was written."""
        hit = self._cache.get(c)
        if hit is not None:
            self._cache.move_to_end(c)
            return hit
        raw = self.raw_chunk(c)
        if raw is None:
            out = self._fill_chunk()
        else:
            out = np.frombuffer(self.decode(raw), dtype=self.dtype).reshape(self.chunk_shape)
        self._cache[c] = out
        if len(self._cache) > 4:
            self._cache.popitem(last=False)
        return out

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Rows `rows` (sorted unique int64, in range) as one array (len(rows), *shape[1:])."""
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        cr = self.chunk_rows
        rl = rows.tolist()
        i, n = 0, len(rl)
        while i < n:  # plain-int loop: per-row numpy overhead dominated at 1-frame chunks
            c = rl[i] // cr
            j = i + 1
            while j < n and rl[j] // cr == c:
                j += 1
            data = self.chunk(c)
            if j - i == 1:
                out[i] = data[rl[i] - c * cr]
            else:
                out[i:j] = data[rows[i:j] - c * cr]
            i = j
        return out

    def read_into(self, rows: list[int], out: np.ndarray, window: tuple[slice, slice] | None = None) -> None:
        """Write rows `rows` (any order, repeats allowed, in range) into `out[k]`, optionally cropped.

        `out` has shape (len(rows), *row_shape) or, with `window` = (row slice, column slice) over axes 1
        and 2, the cropped shape. With 1-row chunks and no window each chunk is decompressed straight
        into its destination row (no intermediate copy); otherwise through the chunk cache.
        """
        if self.chunk_rows == 1 and window is None and out.flags.c_contiguous:
            for k, r in enumerate(rows):
                raw = self.raw_chunk(r)
                if raw is None:
                    out[k] = self.fill if self.fill is not None else 0
                else:
                    self.decode_into(raw, out[k])
            return
        if self.chunk_rows == 1 and self.uncompressed:
            # uncompressed 1-row chunks: copy the window straight out of the chunk's bytes (with mmap a
            # view of the page cache), one copy instead of decode-into-scratch + crop
            ys, xs = window if window is not None else (slice(None), slice(None))
            row_shape, dtype = self.chunk_shape[1:], self.dtype
            for k, r in enumerate(rows):
                raw = self.raw_chunk(r)
                if raw is None:
                    out[k] = self.fill if self.fill is not None else 0
                else:
                    out[k] = np.frombuffer(raw, dtype).reshape(row_shape)[ys, xs]
            return
        if self.chunk_rows == 1:
            scratch = getattr(self, "_scratch", None)
            if scratch is None:
                scratch = self._scratch = np.empty(self.chunk_shape[1:], self.dtype)
            ys, xs = window if window is not None else (slice(None), slice(None))
            for k, r in enumerate(rows):
                raw = self.raw_chunk(r)
                if raw is None:
                    out[k] = self.fill if self.fill is not None else 0
                else:
                    self.decode_into(raw, scratch)
                    out[k] = scratch[ys, xs]
            return
        cr = self.chunk_rows
        for k, r in enumerate(rows):
            data = self.chunk(r // cr)[r % cr]
            out[k] = data if window is None else data[window[0], window[1]]
