"""Pure sampling logic of the training input: positions, windows, I-frame choice, pose gap filling."""

from __future__ import annotations

import numpy as np
import pytest

from csvr.train.data.sampling import (
    ClipSpec, clip_window, eval_starts, frame_positions, interpolate_gaps, random_start, select_iframes, span,
    stored_stride,
)


def test_positions_follow_stride_and_future_follows_clip():
    spec = ClipSpec(frames=16, stride=4, future_frames=16)
    pos, short = frame_positions(10, 200, spec, 4)
    assert not short
    assert pos.tolist() == [10 + 4 * k for k in range(32)]
    assert span(spec, 4) == 125
    assert pos[16] == pos[15] + 4  # the future clip continues at the same stride


def test_short_video_loop_and_pad_never_leave_the_video():
    loop = ClipSpec(frames=4, stride=4, future_frames=4, short_video="loop")
    pos, short = frame_positions(5, 20, loop, 4)
    assert short and pos.tolist() == [(5 + 4 * k) % 20 for k in range(8)]
    pad = ClipSpec(frames=4, stride=4, future_frames=4, short_video="pad")
    pos, short = frame_positions(0, 10, pad, 4)
    assert short and pos.tolist() == [0, 4, 8, 9, 9, 9, 9, 9]
    with pytest.raises(ValueError, match="short_video"):
        ClipSpec(short_video="zeros")


def test_random_start_range():
    spec = ClipSpec(frames=4, stride=2, future_frames=2)  # span 11
    rng = np.random.default_rng(0)
    starts = {random_start(20, spec, 2, rng) for _ in range(500)}
    assert starts == set(range(10))
    assert all(0 <= random_start(5, spec, 2, rng) < 5 for _ in range(50))  # short: loop anywhere


def test_eval_starts_uniform_and_deterministic():
    spec = ClipSpec(frames=16, stride=4, future_frames=0)  # span 61
    s = eval_starts(160, spec, 4, 10)
    assert s[0] == 0 and s[-1] == 160 - 61 and len(s) == 10
    assert np.all(np.diff(s) >= 10) and np.all(np.diff(s) <= 12)
    assert eval_starts(30, spec, 4, 3).tolist() == [0, 10, 20]  # short video, loop policy


def test_window_and_iframe_selection():
    spec = ClipSpec(frames=4, stride=4, future_frames=4, max_iframes=2)
    win = clip_window(10, 100, spec, 4)
    assert win.tolist() == list(range(10, 26))
    iframes = np.array([0, 12, 24, 36])
    sel, count, fb = select_iframes(iframes, win, 4)
    assert iframes[sel].tolist() == [12, 24] and count == 2 and not fb
    sel, count, fb = select_iframes(np.array([0, 12, 14, 16, 24]), win, 2)  # 4 inside, 2 slots: evenly
    assert count == 4 and len(sel) == 2 and sel.tolist() == [1, 4]
    sel, count, fb = select_iframes(np.array([0, 40, 90]), win, 4)  # none inside: nearest to the centre 17.5
    assert count == 0 and fb and sel.tolist() == [0]


def test_interpolate_gaps_fills_short_gaps_only():
    kp = np.zeros((8, 17, 3), np.float32)
    obs = np.zeros((8, 17), bool)
    for t in (0, 3, 7):  # gap of 2 (t=1,2) and gap of 3 (t=4,5,6)
        kp[t, 5] = (t / 10, 1 - t / 10, 0.9)
        obs[t, 5] = True
    out = interpolate_gaps(kp, obs, max_gap=2)
    np.testing.assert_allclose(out[1, 5, :2], [0.1, 0.9], atol=1e-6)
    np.testing.assert_allclose(out[2, 5, :2], [0.2, 0.8], atol=1e-6)
    assert (out[4:7, 5] == 0).all()  # gap of 3 > max_gap stays missing
    assert (out[1:3, 5, 2] == 0).all()  # filled samples keep confidence 0
    assert (interpolate_gaps(kp, obs, 0) == kp).all()


def test_stored_stride_maps_exactly_or_refuses():
    assert stored_stride(ClipSpec(stride=4), 1) == 4
    assert stored_stride(ClipSpec(stride=4), 2) == 2
    assert stored_stride(ClipSpec(stride=4), 4) == 1
    with pytest.raises(ValueError, match=r"clip stride 4 .* every 3-th source frame .*--frame-step that divides 4"):
        stored_stride(ClipSpec(stride=4), 3)
