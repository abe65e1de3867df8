"""The real clips from ../shared with the yolo backend: people are found on most frames."""

from __future__ import annotations

import numpy as np
import pytest

from csvr.preprocess.pipeline import preprocess_dataset
from csvr.preprocess.schema import open_store


def test_real_clips_get_poses(real_clips, tmp_path):
    from csvr.data_manifests.manifest import Manifest, VideoEntry

    pytest.importorskip("onnxruntime")
    clips = sorted(p.relative_to(real_clips).as_posix() for p in (real_clips / "ps7").glob("*.avi"))[:2]
    if len(clips) < 2:
        pytest.skip("no ps7 clips")
    m = Manifest("folder", real_clips, ["ps7"], [VideoEntry(c, 0, "ps7", {1: "test"}) for c in clips])
    out = tmp_path / "real.zarr"
    summary = preprocess_dataset(m, out, pose="yolo", workers=0, frame_step=4, iframe_policy="native",
                                 shard_frames=64, progress=False)
    assert summary["ok"] == 2 and summary["failed"] == 0
    g = open_store(str(out))
    main = g["poses/main_actor"][:]
    assert (main >= 0).mean() > 0.8, (main >= 0).mean()  # people are in every PS7 frame
    kp = g["poses/keypoints"][:].astype(np.float32)
    sel = kp[np.arange(len(main)), np.maximum(main, 0)]
    assert (sel[main >= 0, :, 2] > 0.3).mean(axis=1).mean() > 0.5  # most joints confidently found
    assert g["iframes/source_index"][:].tolist()[:1] == [0]  # native: one I-frame per PS7 clip at 0
    assert g.attrs["pose_model"]["name"] and g.attrs["pose_model"]["weights_sha256"]
