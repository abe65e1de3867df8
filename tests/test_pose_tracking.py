"""Main-actor selection: follows one person through slot swaps, gaps, and a second person."""

from __future__ import annotations

import numpy as np
import pytest

from csvr.preprocess.pose.tracking import TrackerOptions, link_tracks, select_main_actor


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


# ---------------------------------------------------------------- temporal support (issue 12 item 6)

NO_SUPPORT = TrackerOptions(min_frames=1, min_score=0.0, fragment_min_frames=1, max_elsewhere=0.0)  # the old rule


def _rock_face(t_len: int, frames: tuple[int, ...], score: float = 0.27) -> list:
    """A false positive on the background: a big box, seen only in `frames`."""
    out: list = [None] * t_len
    for t in frames:
        out[t] = [0.05, 0.05, 0.55, 0.95, score]
    return out


def test_lone_low_score_detection_is_not_the_main_actor():
    t_len = 100
    kps, boxes, slot = _scene({"rock": _rock_face(t_len, (40, 41))}, t_len)
    assert (select_main_actor(kps, boxes) == -1).all()
    # without the support rule it was taken (the climbing clip of the issue)
    assert (select_main_actor(kps, boxes, NO_SUPPORT)[[40, 41]] == 0).all()
    # each requirement alone rejects it: too few frames, too low a mean score
    assert (select_main_actor(kps, boxes, TrackerOptions(min_frames=3, min_score=0.0)) == -1).all()
    assert (select_main_actor(kps, boxes, TrackerOptions(min_frames=1, min_score=0.3)) == -1).all()


def test_consistently_detected_person_is_the_main_actor_and_the_blip_is_not_chained():
    t_len = 100
    person = _walker(0.6, 0.002, 0.15, 0.4, t_len, score=lambda t: 0.45 + 0.2 * (t % 2))
    for t in (40, 41, 70):
        person[t] = None  # missed exactly where the rock face fires
    kps, boxes, slot = _scene({"person": person, "rock": _rock_face(t_len, (40, 41))}, t_len)
    main = select_main_actor(kps, boxes)
    np.testing.assert_array_equal(main, slot["person"])
    assert (main[[40, 41, 70]] == -1).all() and (main >= 0).sum() == 97
    # the old rule spliced the blip into the actor's missing frames (not seen next to them)
    assert (select_main_actor(kps, boxes, NO_SUPPORT)[[40, 41]] == 0).all()


def test_support_thresholds():
    t_len = 60
    # a confident person seen in 6 scattered frames only (every 10th frame: one track through the gaps)
    sparse = [[0.3, 0.2, 0.5, 0.8, 0.9] if t % 10 == 0 else None for t in range(t_len)]
    kps, boxes, _ = _scene({"p": sparse}, t_len)
    assert (select_main_actor(kps, boxes, TrackerOptions(min_frames=8)) == -1).all()
    assert (select_main_actor(kps, boxes, TrackerOptions(min_frames=6)) >= 0).sum() == 6
    assert (select_main_actor(kps, boxes, TrackerOptions(min_frames=1, min_fraction=0.2)) == -1).all()  # 6 < 12
    assert (select_main_actor(kps, boxes, TrackerOptions(min_frames=1, min_fraction=0.1)) >= 0).sum() == 6
    # a video shorter than 2 x min_frames: a person seen in half of it is enough
    short = _walker(0.2, 0.0, 0.3, 0.6, 5)
    short[3] = short[4] = None
    kps, boxes, slot = _scene({"p": short}, 5)
    np.testing.assert_array_equal(select_main_actor(kps, boxes, TrackerOptions(min_frames=8)), slot["p"])
    assert TrackerOptions(min_frames=8).support_frames(5) == 3
    assert TrackerOptions(min_frames=8).support_frames(16) == 8 == TrackerOptions(min_frames=8).support_frames(1000)
    assert TrackerOptions(min_frames=8, min_fraction=0.25).support_frames(100) == 25


def test_weak_fragments_need_support_too():
    """Chained pieces of the actor pass the mean-score and `fragment_min_frames` tests like the actor."""
    t_len = 40
    a = _walker(0.05, 0.0, 0.2, 0.5, t_len)
    for t in range(15, 30):
        a[t] = None
    for t in range(30, 34):  # re-detected elsewhere for 4 frames, then lost
        a[t] = [0.7, 0.3, 0.9, 0.8, 0.7]
    for t in range(34, 40):
        a[t] = None
    kps, boxes, slot = _scene({"a": a}, t_len)
    assert (select_main_actor(kps, boxes)[30:34] == 0).all()  # fragment_min_frames=1 by default
    assert (select_main_actor(kps, boxes, TrackerOptions(fragment_min_frames=5))[30:34] == -1).all()
    weak = select_main_actor(kps, boxes, TrackerOptions(min_score=0.75))  # actor 0.8, fragment 0.7
    assert (weak[:15] == 0).all() and (weak[30:34] == -1).all()


def test_tracker_options_parse_and_pose_options():
    from csvr.preprocess.pose import build_estimator
    from csvr.preprocess.pose.tracking import split_tracker_options

    assert TrackerOptions.parse("") == TrackerOptions()
    o = TrackerOptions.parse("min_frames=3, min_score=0.5")
    assert o.min_frames == 3 and o.min_score == 0.5 and o.max_gap == TrackerOptions().max_gap
    with pytest.raises(ValueError, match="unknown tracker setting"):
        TrackerOptions.parse("frames=3")
    with pytest.raises(ValueError, match="min_score"):
        TrackerOptions(min_score=1.5)
    backend, tr = split_tracker_options({"imgsz": 416, "track_min_frames": 4, "track_min_score": "0.3"})
    assert backend == {"imgsz": 416} and tr == TrackerOptions(min_frames=4, min_score=0.3)
    with pytest.raises(ValueError, match="track_<name>"):
        split_tracker_options({"track_minframes": 4})
    est = build_estimator("groundtruth", max_people=1, track_min_frames=3, track_max_gap=5)
    assert est.tracker == TrackerOptions(min_frames=3, max_gap=5)
    assert est.describe()["tracker"]["min_frames"] == 3
    assert build_estimator("groundtruth").tracker == TrackerOptions()


def test_link_options_still_accepted_as_keywords():
    t_len = 30
    a = _walker(0.05, 0.0, 0.2, 0.5, t_len)
    for t in range(10, 22):  # a 12-frame gap: beyond max_gap=10, within 15
        a[t] = None
    kps, boxes, slot = _scene({"a": a}, t_len)
    assert len(set(link_tracks(boxes, max_gap=15)[:, 0][boxes[:, 0, 4] > 0].tolist())) == 1
    np.testing.assert_array_equal(select_main_actor(kps, boxes, max_gap=15), slot["a"])


def test_partial_box_elsewhere_in_a_few_shared_frames_is_still_the_actor():
    """A long track of the actor that overlaps a new full-body track for a while, and in a few of those
    frames is a partial box outside it (real: the boxing clip at imgsz 640), is the same person; one seen
    elsewhere in most shared frames is someone else."""
    t_len = 60
    early: list = [[0.30, 0.2, 0.60, 0.8, 0.7] for _ in range(35)] + [None] * 25  # frames 0-34
    late: list = [None] * 24 + [[0.20, 0.2, 0.55, 0.85, 0.8] for _ in range(36)]  # frames 24-59, bigger
    for t in range(20, 35):  # the early track shrinks to an arm-sized box, at the late box's edge ...
        early[t] = [0.45, 0.3, 0.56, 0.7, 0.5]
    for t in (26, 31):  # ... that twice sticks out of it (elsewhere in 2 of 11 shared frames)
        early[t] = [0.50, 0.3, 0.64, 0.7, 0.5]
    kps, boxes, slot = _scene({"early": early, "late": late}, t_len)
    ids = link_tracks(boxes)
    assert len(np.unique(ids[boxes[..., 4] > 0])) == 2
    assert ids[0, slot["early"][0]] == ids[30, slot["early"][30]] != ids[30, slot["late"][30]]
    main = select_main_actor(kps, boxes)
    assert (main >= 0).all()  # early frames 0-23 from the early track, the rest from the late one
    np.testing.assert_array_equal(main[:24], slot["early"][:24])
    np.testing.assert_array_equal(main[24:], slot["late"][24:])
    assert (select_main_actor(kps, boxes, TrackerOptions(max_elsewhere=0.0))[:24] == -1).all()  # the old rule
    # elsewhere in most shared frames: another person, never chained
    other: list = [[0.70, 0.2, 0.95, 0.8, 0.7] for _ in range(35)] + [None] * 25
    kps, boxes, slot = _scene({"other": other, "late": late}, t_len)
    main = select_main_actor(kps, boxes)
    assert (main[:24] == -1).all() and (main[24:] == slot["late"][24:]).all()
