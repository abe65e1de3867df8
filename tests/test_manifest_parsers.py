"""Parsers of the official annotation formats, on tiny hand-made copies (empty video files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from csvr.data_manifests import ExpectedCounts, Manifest, ManifestError, build_manifest
from csvr.data_manifests.cli import manifest as manifest_cmd

HMDB_ODD = "Fast_&_Furious_(1)!_+_jump_f_cm_np1_ri_med_0.avi"


def touch(path: Path, data: bytes = b"") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# ---- UCF101 ---------------------------------------------------------------------------------------
UCF_CLASSES = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]


def make_ucf101(root: Path) -> dict[str, list[str]]:
    """3 classes x 3 videos; split 1: groups 1 test, 2-3 train; split 2: group 2 test. CRLF lines."""
    ann = root / "ucfTrainTestlist"
    ann.mkdir(parents=True)
    (ann / "classInd.txt").write_bytes("".join(f"{i} {c}\r\n" for i, c in enumerate(UCF_CLASSES, 1)).encode())
    lists: dict[str, list[str]] = {k: [] for k in ("train1", "test1", "train2", "test2")}
    for i, c in enumerate(UCF_CLASSES, 1):
        file_cls = "HandStandPushups" if c == "HandstandPushups" else c  # the real dataset's quirk
        for g in (1, 2, 3):
            rel = f"{c}/v_{file_cls}_g{g:02d}_c01.avi"
            touch(root / "UCF-101" / rel)
            lists["test1" if g == 1 else "train1"].append(rel if g == 1 else f"{rel} {i}")
            lists["test2" if g == 2 else "train2"].append(rel if g == 2 else f"{rel} {i}")
    for n in (1, 2):
        (ann / f"trainlist0{n}.txt").write_text("\n".join(lists[f"train{n}"]) + "\n")
        (ann / f"testlist0{n}.txt").write_text("\n".join(lists[f"test{n}"]) + "\n")
    return lists


UCF_TINY = ExpectedCounts(videos=9, classes=3, splits={1: {"train": 6, "test": 3}, 2: {"train": 6, "test": 3}})


def test_ucf101_parses_official_lists(tmp_path: Path) -> None:
    make_ucf101(tmp_path)
    m = build_manifest("ucf101", tmp_path, expected_counts=UCF_TINY)
    assert m.classes == UCF_CLASSES
    assert [v.path for v in m.videos] == sorted(v.path for v in m.videos)
    assert len(m.videos) == 9
    v = next(v for v in m.videos if v.path == "UCF-101/HandstandPushups/v_HandStandPushups_g01_c01.avi")
    assert (v.label, v.label_name, v.splits) == (1, "HandstandPushups", {1: "test", 2: "train"})
    assert m.split_counts(1) == {"train": 6, "test": 3, "unused": 0}
    assert m.split_numbers == [1, 2]
    assert all((tmp_path / v.path).is_file() for v in m.videos)


def test_ucf101_default_is_strict_official_counts(tmp_path: Path) -> None:
    make_ucf101(tmp_path)
    with pytest.raises(ManifestError, match=r"9 videos, expected 13320.*3 classes|3 classes, expected 101"):
        build_manifest("ucf101", tmp_path)
    assert len(build_manifest("ucf101", tmp_path, expected_counts=False).videos) == 9


def test_ucf101_missing_file_is_named(tmp_path: Path) -> None:
    make_ucf101(tmp_path)
    (tmp_path / "UCF-101/YoYo/v_YoYo_g03_c01.avi").unlink()
    with pytest.raises(ManifestError, match=r"not on disk.*UCF-101/YoYo/v_YoYo_g03_c01\.avi"):
        build_manifest("ucf101", tmp_path, expected_counts=False)
    m = build_manifest("ucf101", tmp_path, expected_counts=False, allow_missing=True)
    assert len(m.videos) == 8 and m.meta["missing"] == ["UCF-101/YoYo/v_YoYo_g03_c01.avi"]


def test_ucf101_count_mismatch_names_extra_files(tmp_path: Path) -> None:
    make_ucf101(tmp_path)
    touch(tmp_path / "UCF-101/YoYo/v_YoYo_g09_c09.avi")  # on disk, in no list
    wrong = ExpectedCounts(videos=10, classes=3, splits={1: {"train": 7, "test": 3}})
    with pytest.raises(ManifestError) as err:
        build_manifest("ucf101", tmp_path, expected_counts=wrong)
    text = str(err.value)
    assert "9 videos, expected 10" in text and "split 1: 6 train, expected 7" in text
    assert "v_YoYo_g09_c09.avi" in text and "in no annotation file" in text


def test_ucf101_label_disagreeing_with_classind_fails(tmp_path: Path) -> None:
    make_ucf101(tmp_path)
    f = tmp_path / "ucfTrainTestlist/trainlist01.txt"
    f.write_text(f.read_text().replace("v_YoYo_g02_c01.avi 3", "v_YoYo_g02_c01.avi 1"))
    with pytest.raises(ManifestError, match=r"trainlist01\.txt:\d+: label '1'.*classInd index 3"):
        build_manifest("ucf101", tmp_path, expected_counts=False)


def test_ucf101_missing_annotation_folder(tmp_path: Path) -> None:
    (tmp_path / "UCF-101").mkdir()
    with pytest.raises(ManifestError, match="ucfTrainTestlist"):
        build_manifest("ucf101", tmp_path)


# ---- HMDB51 ---------------------------------------------------------------------------------------
def make_hmdb51(root: Path) -> None:
    """2 classes x 3 videos; split n: video n-1 test, next train, last unused (codes 2/1/0)."""
    videos = {
        "brush_hair": [
            "April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
            "Blonde_brush_hair_f_cm_np1_le_med_1.avi",
            "x_brush_hair_f_nm_np1_ri_goo_2.avi",
        ],
        "jump": [HMDB_ODD, "Prelinger_jump;'s_h_nm_np1_fr_bad_1.avi", "zz_jump_u_nm_np1_ba_med_2.avi"],
    }
    sdir = root / "testTrainMulti_7030_splits"
    sdir.mkdir(parents=True)
    for cls, names in videos.items():
        for name in names:
            touch(root / cls / name)
        for n in (1, 2, 3):
            codes = {names[(n - 1) % 3]: "2", names[n % 3]: "1", names[(n + 1) % 3]: "0"}
            (sdir / f"{cls}_test_split{n}.txt").write_text("".join(f"{v} {codes[v]} \n" for v in names))


HMDB_TINY = ExpectedCounts(videos=6, classes=2, splits={n: {"train": 2, "test": 2, "unused": 2} for n in (1, 2, 3)})


def test_hmdb51_parses_split_codes_and_odd_names(tmp_path: Path) -> None:
    make_hmdb51(tmp_path)
    m = build_manifest("hmdb51", tmp_path, expected_counts=HMDB_TINY)
    assert m.classes == ["brush_hair", "jump"]
    odd = next(v for v in m.videos if v.path == f"jump/{HMDB_ODD}")
    assert odd.label == 1 and odd.label_name == "jump"
    assert odd.splits == {1: "test", 2: "unused", 3: "train"}
    assert (tmp_path / odd.path).is_file()


def test_hmdb51_names_round_trip_through_csv(tmp_path: Path) -> None:
    make_hmdb51(tmp_path / "d")
    m = build_manifest("hmdb51", tmp_path / "d", expected_counts=False)
    out = m.to_csv(tmp_path / "m.csv")
    back = Manifest.from_csv(out, tmp_path / "d", dataset="hmdb51")
    assert back.videos == m.videos and back.classes == m.classes
    assert back.digest() == m.digest()
    assert HMDB_ODD in out.read_text(encoding="utf-8")
    assert any("'s_h" in v.path for v in back.videos)


def test_hmdb51_strict_counts_and_missing(tmp_path: Path) -> None:
    make_hmdb51(tmp_path)
    with pytest.raises(ManifestError, match="6 videos, expected 6766"):
        build_manifest("hmdb51", tmp_path)
    (tmp_path / "jump" / HMDB_ODD).unlink()
    with pytest.raises(ManifestError) as err:
        build_manifest("hmdb51", tmp_path, expected_counts=False)
    assert HMDB_ODD in str(err.value) and "not on disk" in str(err.value)


def test_hmdb51_missing_split_file_is_named(tmp_path: Path) -> None:
    make_hmdb51(tmp_path)
    (tmp_path / "testTrainMulti_7030_splits/jump_test_split2.txt").unlink()
    with pytest.raises(ManifestError, match="jump_test_split2.txt"):
        build_manifest("hmdb51", tmp_path, expected_counts=False)


# ---- Kinetics-400 ---------------------------------------------------------------------------------
def test_kinetics400_layouts_and_missing_videos(tmp_path: Path) -> None:
    ann = tmp_path / "annotations"
    ann.mkdir()
    (ann / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\n"
        '"passing American football (in game)",---QUuC4vJs,84,94,train\n'
        "abseiling,--Ntzgb2d2c,0,10,train\n"
        "abseiling,gone_video1,12,22,train\n"
    )
    (ann / "validate.csv").write_text("youtube_id,time_start,time_end,split,label\nvalvideo001,5,15,val,abseiling\n")
    (ann / "test.csv").write_text("youtube_id,time_start,time_end,split\ntestvideo01,0,10,test\n")
    touch(tmp_path / "train/passing American football (in game)/---QUuC4vJs_000084_000094.mp4")
    touch(tmp_path / "train/abseiling/--Ntzgb2d2c_000000_000010.mp4")
    touch(tmp_path / "val/valvideo001_000005_000015.mp4")  # flat layout
    m = build_manifest("kinetics400", tmp_path, expected_counts=ExpectedCounts(classes=2))
    assert m.classes == ["abseiling", "passing American football (in game)"]
    assert len(m.videos) == 3
    assert m.split_counts(1) == {"train": 2, "test": 1, "unused": 0}
    assert m.meta["missing"] == {"train": ["gone_video1_000012_000022"]}
    assert m.meta["annotated"] == 4 and m.meta["unlabelled"] == 1
    with pytest.raises(ManifestError, match="2 classes, expected 400"):
        build_manifest("kinetics400", tmp_path)


def test_kinetics400_bad_header(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("label,id,start,end\n")
    with pytest.raises(ManifestError, match=r"train\.csv: missing column"):
        build_manifest("kinetics400", tmp_path, expected_counts=False)


# ---- Something-Something v2 -----------------------------------------------------------------------
def make_ssv2(root: Path) -> None:
    labels = {"Holding something next to something": "1", "Approaching something with your camera": "0"}
    train = [
        {
            "id": "78687",
            "label": "holding potato next to vicks vaporub bottle",
            "template": "Holding [something] next to [something]",
            "placeholders": ["potato", "vicks vaporub bottle"],
        },
        {
            "id": "42326",
            "label": "approaching a cup with your camera",
            "template": "Approaching [something] with your camera",
            "placeholders": ["a cup"],
        },
    ]
    val = [
        {
            "id": "74225",
            "label": "approaching door with your camera",
            "template": "Approaching [something] with your camera",
            "placeholders": ["door"],
        }
    ]
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "something-something-v2-labels.json").write_text(json.dumps(labels))
    (root / "labels" / "train.json").write_text(json.dumps(train))
    (root / "labels" / "validation.json").write_text(json.dumps(val))
    for vid in ("78687", "42326", "74225"):
        touch(root / "20bn-something-something-v2" / f"{vid}.webm")


def test_ssv2_maps_templates_to_labels(tmp_path: Path) -> None:
    make_ssv2(tmp_path)
    m = build_manifest(
        "ssv2", tmp_path, expected_counts=ExpectedCounts(videos=3, classes=2, splits={1: {"train": 2, "test": 1}})
    )
    assert m.classes == ["Approaching something with your camera", "Holding something next to something"]
    v = next(v for v in m.videos if v.path.endswith("78687.webm"))
    assert (v.label, v.label_name, v.splits) == (1, "Holding something next to something", {1: "train"})
    assert v.path == "20bn-something-something-v2/78687.webm"
    with pytest.raises(ManifestError, match="174"):
        build_manifest("ssv2", tmp_path)


def test_ssv2_missing_video_and_unknown_template(tmp_path: Path) -> None:
    make_ssv2(tmp_path)
    (tmp_path / "20bn-something-something-v2/74225.webm").unlink()
    with pytest.raises(ManifestError, match=r"74225\.webm"):
        build_manifest("ssv2", tmp_path, expected_counts=False)
    assert len(build_manifest("ssv2", tmp_path, expected_counts=False, allow_missing=True).videos) == 2
    p = tmp_path / "labels/validation.json"
    p.write_text(json.dumps([{"id": "1", "template": "Juggling [something]"}]))
    with pytest.raises(ManifestError, match="Juggling something"):
        build_manifest("ssv2", tmp_path, expected_counts=False, allow_missing=True)


# ---- folder and synthetic -------------------------------------------------------------------------
def test_folder_with_and_without_split_file(tmp_path: Path) -> None:
    for cls in ("b_run", "a_sit"):
        for k in range(4):
            touch(tmp_path / cls / f"clip {k}.mp4")
    touch(tmp_path / "a_sit" / "notes.txt")  # not a video: ignored
    m = build_manifest("folder", tmp_path, test_every=2)
    assert m.classes == ["a_sit", "b_run"] and len(m.videos) == 8
    assert m.split_counts(1) == {"train": 4, "test": 4, "unused": 0}
    (tmp_path / "splits.csv").write_text("path,split1,split2\na_sit/clip 0.mp4,test,train\nb_run/clip 1.mp4,train,\n")
    m = build_manifest("folder", tmp_path)
    assert m.split_counts(1) == {"train": 1, "test": 1, "unused": 6}
    assert next(v for v in m.videos if v.path == "a_sit/clip 0.mp4").splits == {1: "test", 2: "train"}
    (tmp_path / "splits.csv").write_text("path,split1\nc_fly/x.mp4,train\n")
    with pytest.raises(ManifestError, match="c_fly/x.mp4"):
        build_manifest("folder", tmp_path)


def test_synthetic_uses_counts_from_synthetic_json(tmp_path: Path) -> None:
    make_ucf101(tmp_path)
    info = {
        "classes": UCF_CLASSES,
        "groups": {c: "motion" for c in UCF_CLASSES},
        "seed": 0,
        "options": {"videos_per_class": 3},
        "counts": {"videos": 9, "train": 6, "test": 3},
    }
    (tmp_path / "synthetic.json").write_text(json.dumps(info))
    m = build_manifest("synthetic", tmp_path)
    assert m.dataset == "synthetic" and len(m.videos) == 9 and m.meta["groups"]["YoYo"] == "motion"
    assert build_manifest("ucf101", tmp_path).videos == m.videos  # strict, with the stated counts
    info["counts"]["videos"] = 12
    (tmp_path / "synthetic.json").write_text(json.dumps(info))
    for name in ("synthetic", "ucf101"):
        with pytest.raises(ManifestError, match="9 videos, expected 12"):
            build_manifest(name, tmp_path)
    info["classes"] = ["Other"] + UCF_CLASSES[1:]
    (tmp_path / "synthetic.json").write_text(json.dumps(info))
    with pytest.raises(ManifestError, match="differ from the expected"):
        build_manifest("synthetic", tmp_path)


def test_unknown_dataset() -> None:
    with pytest.raises(ManifestError, match="unknown dataset 'ucf102'"):
        build_manifest("ucf102", Path("."))


# ---- CLI ------------------------------------------------------------------------------------------
def test_cli_prints_counts_and_writes_csv(tmp_path: Path) -> None:
    make_ucf101(tmp_path / "u")
    runner = CliRunner()
    res = runner.invoke(manifest_cmd, ["ucf101", "--root", str(tmp_path / "u"), "--no-strict"])
    assert res.exit_code == 0, res.output
    assert "9 videos, 3 classes" in res.output
    assert "    1        6        3        0" in res.output
    out = tmp_path / "u" / "manifest-ucf101.csv"
    assert out.read_text().splitlines()[0] == "path,label,label_name,split1,split2,split3"
    res = runner.invoke(
        manifest_cmd,
        ["ucf101", "--root", str(tmp_path / "u"), "--split", "2", "--out", str(tmp_path / "x.csv"), "--no-strict"],
    )
    assert res.exit_code == 0 and (tmp_path / "x.csv").is_file()
    res = runner.invoke(manifest_cmd, ["ucf101", "--root", str(tmp_path / "u")])
    assert res.exit_code == 1 and "expected 13320" in res.output


def test_real_synthetic_dataset_manifest(synthetic_root: Path) -> None:
    """The generator's output parses strictly (counts from its synthetic.json) and round-trips."""
    info = json.loads((synthetic_root / "synthetic.json").read_text())
    m = build_manifest("synthetic", synthetic_root)
    assert m.classes == info["classes"]
    assert len(m.videos) == info["counts"]["videos"]
    assert m.split_counts(1)["train"] == info["counts"]["train"] and m.split_counts(1)["test"] == info["counts"]["test"]
    assert all((synthetic_root / v.path).is_file() for v in m.videos)
    as_ucf = build_manifest("ucf101", synthetic_root)  # strict: counts from synthetic.json
    assert as_ucf.videos == m.videos and as_ucf.digest() == m.digest()


REAL_HMDB_NAMES = {  # names of real HMDB51 files (as in ../shared/data/real-clips/hmdb51)
    "climb": "(HQ)_Rock_Climbing_-_Free_Solo_Speed_Climb_-_Dan_Osman_climb_f_cm_np1_le_med_2.avi",
    "golf": "Golf_Tips_-_Hit_The_Driver_300+_Yards!!!_golf_f_nm_np1_fr_med_0.avi",
}


def test_hmdb51_real_file_names_round_trip(tmp_path: Path) -> None:
    sdir = tmp_path / "d" / "testTrainMulti_7030_splits"
    sdir.mkdir(parents=True)
    for cls, name in REAL_HMDB_NAMES.items():
        touch(tmp_path / "d" / cls / name)
        (sdir / f"{cls}_test_split1.txt").write_text(f"{name} 1 \n")
    m = build_manifest("hmdb51", tmp_path / "d", expected_counts=False)
    back = Manifest.from_csv(m.to_csv(tmp_path / "m.csv"), tmp_path / "d")
    assert sorted(v.path for v in back.videos) == sorted(f"{c}/{n}" for c, n in REAL_HMDB_NAMES.items())
    assert all((tmp_path / "d" / v.path).is_file() for v in back.videos)


def test_folder_parser_on_real_clips(real_clips: Path) -> None:
    import csv

    rows = list(csv.DictReader((real_clips / "clips.csv").open()))
    m = build_manifest("folder", real_clips)
    assert sorted(v.path for v in m.videos) == sorted(r["path"] for r in rows)
    assert {v.label_name for v in m.videos} == {r["path"].split("/")[0] for r in rows}


def test_ucf101_video_absent_from_one_split_is_an_error(tmp_path: Path) -> None:
    make_ucf101(tmp_path)
    f = tmp_path / "ucfTrainTestlist/testlist02.txt"
    f.write_text(f.read_text().replace("YoYo/v_YoYo_g02_c01.avi\n", ""))
    with pytest.raises(ManifestError, match=r"YoYo/v_YoYo_g02_c01\.avi \(split 2\)"):
        build_manifest("ucf101", tmp_path, expected_counts=False)


def test_folder_scan_counts_what_it_skips(tmp_path):
    from csvr.data_manifests.parsers.folder import parse_folder

    (tmp_path / "Jump").mkdir()
    (tmp_path / "Jump" / "a.avi").write_bytes(b"x")
    (tmp_path / "Jump" / "notes.txt").write_text("x")
    (tmp_path / "Jump" / "b.MOV.bak").write_bytes(b"x")
    (tmp_path / "Jump" / ".hidden.avi").write_bytes(b"x")
    (tmp_path / "Jump" / "clip.avi").mkdir()            # a folder named like a video
    (tmp_path / "Jump" / "clip.avi" / "inner.mp4").write_bytes(b"x")
    m = parse_folder(tmp_path)
    assert [v.path for v in m.videos] == ["Jump/a.avi", "Jump/clip.avi/inner.mp4"]
    assert m.meta["skipped"] == {"by_extension": {".txt": 1, ".bak": 1}, "hidden": 1,
                                 "video_named_dirs": ["clip.avi/"]}
