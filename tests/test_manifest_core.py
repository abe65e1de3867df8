"""Manifest/VideoEntry: validation, canonical CSV, digest, split counts, CSV errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from csvr.data_manifests import ExpectedCounts, Manifest, ManifestError, VideoEntry


def small() -> Manifest:
    return Manifest(
        "toy",
        Path("/data"),
        ['a, "quoted"', "b"],
        [
            VideoEntry("b/2.avi", 1, "b", {1: "test", 2: "train"}),
            VideoEntry("a/1.avi", 0, 'a, "quoted"', {1: "train", 2: "unused"}),
            VideoEntry("a/0.avi", 0, 'a, "quoted"', {1: "train"}),
        ],
    )


def test_sorted_counts_and_select() -> None:
    m = small()
    assert [v.path for v in m.videos] == ["a/0.avi", "a/1.avi", "b/2.avi"]
    assert m.split_counts(1) == {"train": 2, "test": 1, "unused": 0}
    assert m.split_counts(2) == {"train": 1, "test": 0, "unused": 1}
    assert m.split_counts(3) == {"train": 0, "test": 0, "unused": 0}
    assert m.split_numbers == [1, 2] and m.class_counts() == [2, 1]
    assert [v.path for v in m.select(1, "train")] == ["a/0.avi", "a/1.avi"]


def test_canonical_csv_and_round_trip(tmp_path: Path) -> None:
    m = small()
    text = m.to_csv_text()
    assert text.splitlines() == [
        "path,label,label_name,split1,split2,split3",
        'a/0.avi,0,"a, ""quoted""",train,,',
        'a/1.avi,0,"a, ""quoted""",train,unused,',
        "b/2.avi,1,b,test,train,",
    ]
    back = Manifest.from_csv(m.to_csv(tmp_path / "manifest-toy.csv"), "/data")
    assert back.dataset == "toy" and back.classes == m.classes and back.videos == m.videos
    assert back.digest() == m.digest() == __import__("hashlib").sha256(text.encode()).hexdigest()
    changed = small()
    changed.videos[0].splits[1] = "test"
    assert changed.digest() != m.digest()


def test_validation_errors() -> None:
    with pytest.raises(ManifestError, match="duplicate path 'a/0.avi'"):
        Manifest("t", Path("."), ["a"], [VideoEntry("a/0.avi", 0, "a"), VideoEntry("a/0.avi", 0, "a")])
    with pytest.raises(ManifestError, match="label 3 outside 0..0"):
        Manifest("t", Path("."), ["a"], [VideoEntry("a/0.avi", 3, "a")])
    with pytest.raises(ManifestError, match="label_name 'b' != classes\\[0\\] 'a'"):
        Manifest("t", Path("."), ["a"], [VideoEntry("a/0.avi", 0, "b")])
    with pytest.raises(ManifestError, match="split1 value 'val'"):
        Manifest("t", Path("."), ["a"], [VideoEntry("a/0.avi", 0, "a", {1: "val"})])
    with pytest.raises(ManifestError, match="not a relative POSIX path"):
        Manifest("t", Path("."), ["a"], [VideoEntry("../a/0.avi", 0, "a")])


def test_from_csv_errors(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_text("file,label\n")
    with pytest.raises(ManifestError, match="header must start with path,label,label_name"):
        Manifest.from_csv(p, tmp_path)
    p.write_text("path,label,label_name,split1\na.avi,0,a\n")
    with pytest.raises(ManifestError, match=r"m\.csv:2: expected 4 fields, got 3"):
        Manifest.from_csv(p, tmp_path)
    p.write_text("path,label,label_name,split1\na.avi,1,b,train\n")
    with pytest.raises(ManifestError, match=r"labels \[0\] have no video"):
        Manifest.from_csv(p, tmp_path)
    assert Manifest.from_csv(p, tmp_path, classes=["a", "b"]).videos[0].label_name == "b"
    with pytest.raises(ManifestError, match="cannot read manifest"):
        Manifest.from_csv(tmp_path / "absent.csv", tmp_path)


def test_check_counts_lists_every_difference() -> None:
    m = small()
    m.check_counts(ExpectedCounts(videos=3, classes=2, splits={1: {"train": 2, "test": 1}}))
    with pytest.raises(ManifestError) as err:
        m.check_counts(ExpectedCounts(videos=4, classes=3, splits={1: {"train": 3}}), hint="see X")
    msg = str(err.value)
    assert "2 classes, expected 3" in msg and "3 videos, expected 4" in msg
    assert "split 1: 2 train, expected 3" in msg and "see X" in msg
