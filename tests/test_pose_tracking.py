"""Main-actor selection: follows one person through slot swaps, gaps, and a second person."""

from __future__ import annotations

import numpy as np
import pytest

from preprocess.pose.tracking import link_tracks, select_main_actor


def _scene(tracks: dict[str, list], t_len: int, p: int = 2) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Place people (lists of per-frame boxes or None) into slots; returns keypoints, boxes, slot-of."""
    boxes = np.zeros((t_len, p, 5), np.float32)
    slot_of = {k: np.full(t_len, -1) for k in tracks}
    for t in range(t_len):
        present = [(k, v[t]) for k, v in tracks.items() if v[t] is not None]
        present.sort(key=lambda kv: -kv[1][4])  # detectors sort by score
        for j, (k, b) in enumerate(present[:p]):
            boxes[t, j] = b
            slot_of[k][t] = j
    kps = np.zeros((t_len, p, 17, 3), np.float32)
    kps[..., 2] = (boxes[..., 4:5] > 0) * 0.5
    return kps, boxes, slot_of


def _walker(x0: float, dx: float, w: float, h: float, t_len: int, score=lambda t: 0.8) -> list:
    return [[x0 + dx * t, 0.2, x0 + dx * t + w, 0.2 + h, score(t)] for t in range(t_len)]


def test_follows_big_person_through_score_order_swaps():
    t_len = 30
    actor = _walker(0.1, 0.005, 0.3, 0.7, t_len, score=lambda t: 0.6 if t % 3 else 0.95)
    other = _walker(0.7, -0.002, 0.1, 0.25, t_len, score=lambda t: 0.8)  # small, sometimes more confident
    kps, boxes, slot = _scene({"actor": actor, "other": other}, t_len)
    assert len(set(slot["actor"].tolist())) == 2  # the detector's order really swaps
    main = select_main_actor(kps, boxes)
    assert main.dtype == np.int8 and main.shape == (t_len,)
    np.testing.assert_array_equal(main, slot["actor"])


def test_gaps_are_minus_one_and_the_track_resumes():
    t_len = 20
    actor = _walker(0.2, 0.01, 0.3, 0.6, t_len)
    for t in (5, 6, 7, 15):
        actor[t] = None
    other = [None] * 10 + _walker(0.75, 0.0, 0.1, 0.2, 10, score=lambda t: 0.99)
    kps, boxes, slot = _scene({"actor": actor, "other": other}, t_len)
    main = select_main_actor(kps, boxes)
    np.testing.assert_array_equal(main, slot["actor"])
    assert (main[[5, 6, 7]] == -1).all()
    assert main[15] == -1  # only the other person is visible: not the main actor
    assert (main[10:15] == slot["actor"][10:15]).all() and (slot["actor"][10:15] == 1).all()


def test_fragmented_single_person_track_is_chained():
    """A person who jumps (no box overlap) after a long gap is still the only actor: both pieces used."""
    t_len = 40
    a = _walker(0.05, 0.0, 0.2, 0.5, t_len)
    for t in range(15, 30):
        a[t] = None
    for t in range(30, 40):
        a[t] = [0.7, 0.3, 0.9, 0.8, 0.7]
    kps, boxes, slot = _scene({"a": a}, t_len)
    ids = link_tracks(boxes)
    assert ids[0, 0] != ids[35, 0]  # two tracks
    main = select_main_actor(kps, boxes)
    np.testing.assert_array_equal(main, slot["a"])


def test_nobody_and_validation():
    kps = np.zeros((5, 2, 17, 3), np.float32)
    boxes = np.zeros((5, 2, 5), np.float32)
    assert (select_main_actor(kps, boxes) == -1).all()
    assert select_main_actor(kps[:0], boxes[:0]).shape == (0,)
    with pytest.raises(ValueError, match=r"\(T, P, 5\)"):
        select_main_actor(kps, boxes[..., :4])
    with pytest.raises(ValueError, match="disagree"):
        select_main_actor(kps[:4], boxes)


def test_two_people_side_by_side_keeps_the_more_prominent():
    t_len = 12
    big = _walker(0.05, 0.0, 0.35, 0.8, t_len, score=lambda t: 0.7)
    small = _walker(0.6, 0.0, 0.2, 0.4, t_len, score=lambda t: 0.9)
    kps, boxes, slot = _scene({"big": big, "small": small}, t_len)
    np.testing.assert_array_equal(select_main_actor(kps, boxes), slot["big"])


def test_partial_duplicate_that_captures_the_track_does_not_drop_the_actor():
    """A partial box of the actor (same frame, inside its box) can start a track that the actor's
    continuation later joins; that track is the same person, not a bystander."""
    t_len = 26
    actor: list = [[0.02 * t, 0.2, 0.02 * t + 0.3, 0.8, 0.8] for t in range(10)] + [None] * 3
    actor += [[0.34 + 0.01 * k, 0.2, 0.64 + 0.01 * k, 0.8, 0.8] for k in range(13)]
    dup: list = [None] * t_len
    dup[9] = [0.36, 0.2, 0.48, 0.8, 0.4]  # right half of the actor at frame 9
    kps, boxes, slot = _scene({"actor": actor, "dup": dup}, t_len)
    ids = link_tracks(boxes)
    assert ids[13, 0] == ids[9, 1]  # the continuation joined the duplicate's track
    main = select_main_actor(kps, boxes)
    assert (main[:10] >= 0).all() and (main[13:] == 0).all()
    assert (main[10:13] == -1).all()
    np.testing.assert_array_equal(main[:9], slot["actor"][:9])
