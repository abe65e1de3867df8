"""A preprocessing worker's peak memory does not grow with the video's length (issue 12 item 5): videos
are decoded, pose-estimated and staged in parts of `STAGE_CHUNK` frames (docs/store.md, "Memory")."""

from __future__ import annotations

import numpy as np

from csvr.benchmarks.preprocessing import peak_rss_of_video
from csvr.preprocess.pipeline import STAGING, staged_rows
from csvr.preprocess.store import FS
from preprocess_testdata import write_joints, write_video


def test_peak_rss_of_a_10x_longer_video_stays_within_1_5x(tmp_path):
    rss = {}
    for frames in (100, 1000):
        video = tmp_path / "data" / "UCF-101" / "Alpha" / f"v_Alpha_g0{frames // 100}_c01.avi"
        centres = write_video(video, frames=frames, size=(320, 240), seed=frames)
        write_joints(tmp_path / "data", "Alpha", video.stem, centres)
        store = tmp_path / f"store{frames}"
        out = peak_rss_of_video(video, store)
        assert out["status"] == "ok" and out["num_frames"] == frames
        rss[frames] = out["maxrss_mb"]
        if frames == 1000:  # the staged parts hold every frame, in order
            fs = FS(str(store))
            rows = staged_rows(fs, 0, "frames", 0, frames)
            assert rows.shape == (frames, 128, 171, 3)
            assert np.array_equal(staged_rows(fs, 0, "frames", 130, 131), rows[130:131])
            assert len([n for n in fs.ls(f"{STAGING}/videos/000000") if n.startswith("frames-")]) > 1
    # the whole-video design held ~0.3 MB per frame (1000 frames: +270 MB over 100 frames)
    assert rss[1000] <= 1.5 * rss[100], rss
