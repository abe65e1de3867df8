"""Test helpers for the pose tests: a tiny hand-made synthetic-layout dataset with joints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

W, H = 64, 48


def _write_video(path: Path, n: int = 4) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i in range(n):
            fr = av.VideoFrame.from_ndarray(np.full((H, W, 3), 40 * i, np.uint8), format="rgb24")
            for pkt in s.encode(fr):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


@pytest.fixture()
def tiny_synth(tmp_path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    root = tmp_path / "synth"
    video = root / "UCF-101" / "Wave" / "v_Wave_g01_c01.avi"
    _write_video(video)
    rng = np.random.default_rng(0)
    joints = (rng.random((4, 17, 2)) * [W, H]).astype(np.float32)
    visible = np.ones((4, 17), bool)
    visible[1, [0, 3, 16]] = False
    visible[3] = False  # nobody visible in frame 3
    jp = root / "joints" / "Wave" / "v_Wave_g01_c01.npz"
    jp.parent.mkdir(parents=True)
    np.savez(jp, joints=joints, visible=visible)
    return root, video, joints, visible
