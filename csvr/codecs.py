"""Lossy per-frame image codecs for the frame arrays, registered with Zarr v3 (`csvr.jpeg`).

A `csvr.jpeg` chunk is one RGB frame (chunk shape (1, H, W, 3), uint8) stored as a baseline JPEG file, encoded
and decoded by libjpeg-turbo through OpenCV. The codec is an array-to-bytes codec in the array's metadata:

    {"name": "csvr.jpeg", "configuration": {"quality": 90, "subsampling": "4:2:0"}}

and is registered through the `zarr.codecs` entry point of this package, so any Zarr v3 reader with csvr
installed opens such a store (`zarr.open_array(...)[k]` decodes frame k); the loader's direct reader
(`train/data/fastchunks.py`) decodes the same bytes without zarr's machinery, in its threads, on CPU.
Decoding on the GPU in batches (nvJPEG) is not implemented (docs/store.md, "Compact formats").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.buffer import Buffer, NDBuffer
from zarr.core.common import JSON, parse_named_configuration

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec

JPEG_CODEC = "csvr.jpeg"
SUBSAMPLING = ("4:4:4", "4:2:2", "4:2:0")


def _sampling(subsampling: str) -> int:
    import cv2

    return {"4:4:4": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444, "4:2:2": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
            "4:2:0": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420}[subsampling]


def encode_jpeg(frame: np.ndarray, quality: int = 90, subsampling: str = "4:2:0") -> bytes:
    """One (H, W, 3) uint8 RGB frame as JPEG bytes (libjpeg-turbo through OpenCV; optimised Huffman tables)."""
    import cv2

    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"JPEG frames are (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality), cv2.IMWRITE_JPEG_OPTIMIZE, 1,
                            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, _sampling(subsampling)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes | memoryview | np.ndarray, shape: tuple[int, int] | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
    """JPEG bytes -> (H, W, 3) uint8 RGB (libjpeg-turbo through OpenCV, 2.5x Pillow's speed here); with
    `shape` (H, W) the decoded size is checked; with `out` the frame is written there and `out` returned."""
    import cv2

    buf = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    arr = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB) if len(buf) else None
    if arr is None:
        raise ValueError(f"not a decodable JPEG chunk ({len(buf)} bytes)")
    if shape is not None and arr.shape[:2] != tuple(shape):
        raise ValueError(f"JPEG chunk is {arr.shape[1]}x{arr.shape[0]}, the array's frames are {shape[1]}x{shape[0]}")
    if out is not None:
        out.reshape(arr.shape)[...] = arr
        return out
    return arr


@dataclass(frozen=True)
class JpegCodec(ArrayBytesCodec):
    """Zarr v3 array->bytes codec: a chunk of one (H, W, 3) uint8 frame as a JPEG file."""

    is_fixed_size = False
    quality: int = 90
    subsampling: str = "4:2:0"

    def __init__(self, *, quality: int = 90, subsampling: str = "4:2:0") -> None:
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
        if subsampling not in SUBSAMPLING:
            raise ValueError(f"JPEG subsampling must be one of {sorted(SUBSAMPLING)}, got {subsampling!r}")
        object.__setattr__(self, "quality", int(quality))
        object.__setattr__(self, "subsampling", subsampling)

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> Self:
        _, config = parse_named_configuration(data, JPEG_CODEC, require_configuration=False)
        return cls(**(config or {}))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, JSON]:
        return {"name": JPEG_CODEC, "configuration": {"quality": self.quality, "subsampling": self.subsampling}}

    def validate(self, *, shape: tuple[int, ...], dtype: Any, chunk_grid: Any) -> None:
        chunk = tuple(getattr(chunk_grid, "chunk_shape", ()))
        if len(shape) != 4 or shape[-1] != 3 or str(dtype.to_native_dtype()) != "uint8" or (chunk and chunk[0] != 1):
            raise ValueError(f"{JPEG_CODEC} stores (N, H, W, 3) uint8 arrays in chunks of one frame; "
                             f"got shape {shape}, dtype {dtype}, chunks {chunk}")

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        arr = decode_jpeg(chunk_bytes.as_numpy_array().tobytes(), chunk_spec.shape[1:3])
        return chunk_spec.prototype.nd_buffer.from_numpy_array(arr.reshape(chunk_spec.shape))

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        arr = chunk_array.as_numpy_array()
        if arr.shape[0] != 1:
            raise ValueError(f"{JPEG_CODEC}: a chunk holds one frame, got {arr.shape[0]}")
        return chunk_spec.prototype.buffer.from_bytes(encode_jpeg(arr[0], self.quality, self.subsampling))

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError  # variable size, like any compressor


def register() -> None:
    """Register the codec with zarr in this process (the entry point does this for every other process)."""
    from zarr.registry import register_codec

    register_codec(JPEG_CODEC, JpegCodec)


register()
