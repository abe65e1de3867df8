"""Tests of the synthetic action-video generator (`data_manifests.synthetic`, `csvr synth`)."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from csvr.data_manifests.synthetic import CLASS_POOL, generate, select_classes
from csvr.data_manifests.synthetic.generate import Options, plan_videos

TINY = dict(videos_per_class=4, num_classes=3, size=(96, 128), seconds=(1.0, 1.6), gop=5)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "ds", seed=7, **TINY)


def _decode(path: Path, skip: str | None = None) -> list[tuple[int, int]]:
    """(pts, pict_type) of the frames PyAV returns, optionally with skip_frame."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        if skip:
            s.codec_context.skip_frame = skip
        return [(int(f.pts), int(f.pict_type)) for f in c.decode(s)]


def test_layout_lists_and_info(tiny: Path) -> None:
    info = json.loads((tiny / "synthetic.json").read_text())
    classes = [c.name for c in select_classes(3)]
    assert info["classes"] == classes == sorted(classes)
    assert set(info["groups"]) == set(classes)
    assert set(info["groups"].values()) <= {"motion", "context", "both"}
    assert info["seed"] == 7 and info["options"]["gop"] == 5
    ind = (tiny / "ucfTrainTestlist" / "classInd.txt").read_text().splitlines()
    assert ind == [f"{i + 1} {c}" for i, c in enumerate(classes)]
    train = [ln.split() for ln in (tiny / "ucfTrainTestlist" / "trainlist01.txt").read_text().splitlines()]
    test = (tiny / "ucfTrainTestlist" / "testlist01.txt").read_text().splitlines()
    assert len(train) + len(test) == 12 == info["counts"]["videos"]
    assert (len(train), len(test)) == (info["counts"]["train"], info["counts"]["test"]) == (6, 6)
    # labels are 1-based classInd indices of the class folder
    for rel, lab in train:
        assert classes[int(lab) - 1] == rel.split("/")[0]
    # split by group: no (class, group) appears in both lists
    grp = lambda rel: rel.split("/")[1].rsplit("_c", 1)[0]  # noqa: E731
    assert not {grp(r) for r, _ in train} & {grp(r) for r in test}
    for rel in [r for r, _ in train] + test:
        cls, name = rel.split("/")
        assert name.startswith(f"v_{cls}_g") and (tiny / "UCF-101" / rel).stat().st_size > 1000
        assert (tiny / "joints" / cls / name.replace(".avi", ".npz")).is_file()


def test_videos_decode_with_configured_iframes_and_joints(tiny: Path) -> None:
    info = json.loads((tiny / "synthetic.json").read_text())
    for v in info["videos"]:
        path = tiny / v["path"]
        frames = _decode(path)
        T = len(frames)
        assert T == v["frames"] and 25 <= T <= 40           # 1.0-1.6 s at 25 fps
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            assert (s.codec_context.name, s.width, s.height, float(s.average_rate)) == ("mpeg4", 128, 96, 25.0)
        expected = list(range(0, T, 5))
        assert [pts for pts, _ in _decode(path, "NONKEY")] == expected
        # NONINTRA is not honoured by the mpeg4 decoder: filter on the picture type of every frame
        assert [pts for pts, t in _decode(path, "NONINTRA") if av.video.frame.PictureType(t).name == "I"] == expected
        j = np.load(tiny / "joints" / v["label_name"] / (Path(v["path"]).stem + ".npz"))
        assert j["joints"].dtype == np.float32 and j["joints"].shape == (T, 17, 2)
        assert j["visible"].dtype == bool and j["visible"].shape == (T, 17)
        vis = j["joints"][j["visible"]]
        assert vis.shape[0] > 0.8 * T * 17
        assert (vis[:, 0] >= 0).all() and (vis[:, 0] <= 127).all() and (vis[:, 1] >= 0).all() and (vis[:, 1] <= 95).all()


def test_single_iframe_mode(tmp_path: Path) -> None:
    root = generate(tmp_path / "one", seed=1, single_iframe=True, **{**TINY, "num_classes": 1, "videos_per_class": 2})
    for p in sorted((root / "UCF-101").rglob("*.avi")):
        frames = _decode(p)
        assert len(frames) >= 25
        assert [pts for pts, _ in _decode(p, "NONKEY")] == [0]
        assert [pts for pts, t in frames if t == av.video.frame.PictureType.I] == [0]
    assert json.loads((root / "synthetic.json").read_text())["options"]["single_iframe"] is True


def test_deterministic_across_runs_and_workers(tmp_path: Path, tiny: Path) -> None:
    again = generate(tmp_path / "again", seed=7, workers=2, **TINY)
    a, b = _files(tiny), _files(again)
    assert a.keys() == b.keys()
    differing = [k for k in a if a[k] != b[k]]
    assert differing == []          # joints, lists, json and (single-threaded encoder) videos
    other = generate(tmp_path / "other", seed=8, **{**TINY, "num_classes": 1, "videos_per_class": 2})
    name = sorted((other / "joints").rglob("*.npz"))[0].relative_to(other).as_posix()
    assert np.load(other / name)["joints"].tobytes() != np.load(tiny / name)["joints"].tobytes()


def test_video_of_a_class_does_not_depend_on_other_classes(tmp_path: Path, tiny: Path) -> None:
    first = select_classes(1)[0].name
    solo = generate(tmp_path / "solo", seed=7, **{**TINY, "num_classes": 1})
    for p in sorted((solo / "joints" / first).glob("*.npz")):
        assert p.read_bytes() == (tiny / "joints" / first / p.name).read_bytes()


def test_bad_options_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="videos_per_class must be >= 2"):
        generate(tmp_path / "x", videos_per_class=1)
    with pytest.raises(ValueError, match=f"between 1 and {len(CLASS_POOL)}"):
        generate(tmp_path / "x", num_classes=len(CLASS_POOL) + 1)
    with pytest.raises(ValueError, match="gop must be >= 1"):
        generate(tmp_path / "x", gop=0)
    with pytest.raises(ValueError, match="unsupported codec"):
        generate(tmp_path / "x", codec="vp9", **{**TINY, "num_classes": 1, "videos_per_class": 2})


def test_default_classes_have_the_three_groups() -> None:
    classes = select_classes(12)
    groups = {g: [c for c in classes if c.group == g] for g in ("motion", "context", "both")}
    assert [len(groups[g]) for g in groups] == [6, 3, 3]
    assert {c.scene for c in groups["motion"]} == {"room"}                 # motion-only: one scene family
    assert len({c.motion for c in groups["motion"]}) == 6
    assert {c.motion for c in groups["context"]} == {"walk"}               # context-only: one movement
    assert len({c.scene for c in groups["context"]}) == 3
    for c in groups["both"]:   # its movement is a motion class's, its scene a context class's
        assert c.motion in {m.motion for m in groups["motion"]} and c.scene in {x.scene for x in groups["context"]}
    assert len({(c.motion, c.scene) for c in classes}) == 12


def test_split_plan_by_group() -> None:
    jobs = plan_videos(Options(videos_per_class=10, num_classes=2))
    assert len(jobs) == 20
    for name in {j.cls.name for j in jobs}:
        mine = [j for j in jobs if j.cls.name == name]
        test_groups = {j.group for j in mine if j.split == "test"}
        train_groups = {j.group for j in mine if j.split == "train"}
        assert test_groups and train_groups and not test_groups & train_groups
        assert len({j.stem for j in mine}) == 10


def test_build_manifest_counts(tiny: Path) -> None:
    from csvr.data_manifests import build_manifest

    m = build_manifest("synthetic", root=tiny)
    assert m.classes == [c.name for c in select_classes(3)]
    assert len(m.videos) == 12
    assert m.split_counts(1)["train"] == 6 and m.split_counts(1)["test"] == 6
    v = m.videos[0]
    assert v.path.startswith("UCF-101/") and (tiny / v.path).is_file() and m.classes[v.label] == v.label_name


def test_cli_prints_speed(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from csvr.data_manifests.synthetic.cli import synth

    out = tmp_path / "cli"
    js = tmp_path / "t.json"
    res = CliRunner().invoke(synth, [str(out), "--videos-per-class", "2", "--classes", "2", "--seconds", "1", "1",
                                     "--workers", "1", "--gop", "12", "--json", str(js)])
    assert res.exit_code == 0, res.output
    assert "generated 4 videos" in res.output and "videos/s" in res.output
    summary = json.loads(js.read_text())
    assert summary["videos"] == 4 and summary["frames"] == 100 and summary["videos_per_s"] > 0
    res = CliRunner().invoke(synth, [str(out), "--classes", "99"])
    assert res.exit_code != 0 and "num_classes" in res.output


def test_extra_test_groups_keep_the_train_videos_byte_identical(tmp_path):
    import json

    from csvr.data_manifests.synthetic import generate

    plain = generate(tmp_path / "plain", videos_per_class=4, num_classes=2, seed=0, seconds=(1.0, 1.2))
    more = generate(tmp_path / "more", videos_per_class=4, num_classes=2, seed=0, seconds=(1.0, 1.2),
                    extra_test_groups=1)
    meta_p, meta_m = (json.loads((d / "synthetic.json").read_text()) for d in (plain, more))
    assert meta_m["counts"]["train"] == meta_p["counts"]["train"]
    assert meta_m["counts"]["test"] == meta_p["counts"]["test"] + 2 * 2   # one more group of 2 clips per class
    train = (plain / "ucfTrainTestlist" / "trainlist01.txt").read_text()
    assert train == (more / "ucfTrainTestlist" / "trainlist01.txt").read_text()
    for line in train.splitlines():
        rel = "UCF-101/" + line.split()[0]
        assert (plain / rel).read_bytes() == (more / rel).read_bytes(), rel
