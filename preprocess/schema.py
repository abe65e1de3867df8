"""The store schema ``csvr-store/1`` (docs/contracts.md section 4): names, dtypes, open/validate helpers."""

from __future__ import annotations

from typing import Any

import numpy as np

from csvr.contracts import NUM_JOINTS, SCHEMA, VIDEO_COLUMNS, StoreError, open_store, table_sha256  # noqa: F401  (re-exported)

# frame-aligned arrays (rows = stored frames, F) and I-frame-aligned arrays (rows = I)
FRAME_ARRAYS = ("frames", "poses/keypoints", "poses/boxes", "poses/main_actor")
IFRAME_ARRAYS = ("iframes/images", "iframes/frame_index", "iframes/source_index", "iframes/pict_type")


def array_specs(frame_size: tuple[int, int], max_people: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """Row shape (without the leading axis) and dtype of every frame/I-frame array."""
    H, W = frame_size
    P = max_people
    return {
        "frames": ((H, W, 3), "uint8"),
        "poses/keypoints": ((P, NUM_JOINTS, 3), "float16"),
        "poses/boxes": ((P, 5), "float16"),
        "poses/main_actor": ((), "int8"),
        "iframes/images": ((H, W, 3), "uint8"),
        "iframes/frame_index": ((), "int32"),
        "iframes/source_index": ((), "int32"),
        "iframes/pict_type": ((), "uint8"),
    }


def read_table(group: Any) -> dict[str, np.ndarray]:
    """The per-video table as a dict of 1-D numpy arrays (strings as ``str`` object arrays)."""
    out = {}
    for col, dt in VIDEO_COLUMNS.items():
        a = group[f"videos/{col}"][:]
        out[col] = np.asarray(a, dtype=object).astype(str) if dt == "str" else np.asarray(a)
    return out
