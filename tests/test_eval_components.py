"""The store side of evaluation (read with zarr per the contract) and its errors."""

from __future__ import annotations

from pathlib import Path

import json
import numpy as np
import pytest

from csvr.evaluate.components import StoreInfo, load_model_callables


def _store(path: Path, complete: bool = True, root: Path | None = None) -> Path:
    """A hand-made store holding only what StoreInfo reads: 2 videos of 3 and 4 frames."""
    import zarr

    g = zarr.open_group(str(path), mode="w")
    g.attrs.update({"schema": "csvr-store/1", "complete": complete, "dataset": "synthetic",
                    "classes": ["wave", "walk_park"], "options": {"root": str(root) if root else None}})
    frames = np.zeros((7, 4, 5, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(7)  # frame number in the first pixel
    g.create_array("frames", data=frames, chunks=(1, 4, 5, 3))
    ids = g.create_array("videos/id", shape=(2,), dtype=str)  # variable-length UTF-8, as the writer does
    ids[:] = np.array(["v_a", "v_b"], dtype=object)
    g.create_array("videos/frame_start", data=np.array([0, 3], np.int64))
    g.create_array("videos/num_frames", data=np.array([3, 4], np.int64))
    return path


def test_store_info_reads_ids_classes_and_middle_frames(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "synthetic.json").write_text(json.dumps({"groups": {"wave": "motion", "walk_park": "context"}}))
    info = StoreInfo(_store(tmp_path / "s.zarr", root=data))
    assert info.classes == ["wave", "walk_park"] and info.ids == ["v_a", "v_b"]
    assert info.middle_frame("test", 0)[0, 0, 0] == 1  # frames 0..2 -> middle 1
    assert info.middle_frame("train", 1)[0, 0, 0] == 5  # frames 3..6 -> 3 + 4 // 2
    assert info.class_groups() == {"wave": "motion", "walk_park": "context"}


def test_store_info_refuses_bad_stores(tmp_path):
    with pytest.raises(ValueError, match="incomplete"):
        StoreInfo(_store(tmp_path / "inc.zarr", complete=False))
    assert StoreInfo(tmp_path / "inc.zarr", allow_incomplete=True).ids == ["v_a", "v_b"]
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").attrs["schema"] = "x/9"
    with pytest.raises(ValueError, match="unknown schema"):
        StoreInfo(tmp_path / "other.zarr")


def test_model_callables_need_a_run_and_name_missing_checkpoints(tmp_path):
    assert load_model_callables(None, None) == {"classify": None, "features": None, "pretext": None}
    with pytest.raises(FileNotFoundError, match="no final checkpoint of pretraining run"):
        load_model_callables(tmp_path, None)
    with pytest.raises(FileNotFoundError, match="no fine-tuning checkpoint"):
        load_model_callables(None, tmp_path)
