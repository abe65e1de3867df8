"""UCF101 as distributed: `UCF-101/<Class>/v_<Class>_gXX_cYY.avi` + `ucfTrainTestlist/`.

`classInd.txt` ("1 ApplyEyeMakeup") fixes the label order; `trainlist0N.txt` ("Class/v_....avi 1") and
`testlist0N.txt` ("Class/v_....avi") define split N. The manifest is driven by the annotation files;
videos on disk that no list names are reported as extra.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from csvr.data_manifests.manifest import ExpectedCounts, Manifest, ManifestError, VideoEntry, name_list
from csvr.data_manifests.parsers._common import (
    expected_from_info,
    index_files,
    mismatch_hint,
    missing_error,
    read_lines,
    require_dir,
    require_file,
    resolve_expected,
)

log = logging.getLogger(__name__)

# Split 1 as published by the UCF101 authors (the split the paper reports). Splits 2 and 3 (commonly
# quoted as 9,586/3,734 and 9,624/3,696) are not checked, so that a misremembered number can never
# reject a good copy; every video must still be in exactly one list of each split.
OFFICIAL = ExpectedCounts(videos=13320, classes=101, splits={1: {"train": 9537, "test": 3783}})
_SPLIT_FILE = re.compile(r"^(train|test)list0*(\d+)\.txt$")


def read_class_index(path: Path) -> list[str]:
    """Class names in label order from a `classInd.txt` ("<1-based index> <name>" per line)."""
    entries: dict[int, str] = {}
    for lineno, line in read_lines(require_file(path, "UCF101 class index")):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ManifestError(f"{path}:{lineno}: expected '<index> <ClassName>', got {line!r}")
        idx = int(parts[0])
        if idx in entries:
            raise ManifestError(f"{path}:{lineno}: index {idx} appears twice")
        entries[idx] = parts[1]
    if sorted(entries) != list(range(1, len(entries) + 1)):
        raise ManifestError(f"{path}: indices must be 1..{len(entries)} without gaps, got {sorted(entries)[:5]}...")
    classes = [entries[i] for i in range(1, len(entries) + 1)]
    if len(set(classes)) != len(classes):
        raise ManifestError(f"{path}: a class name appears twice")
    return classes


def find_split_files(ann: Path) -> dict[int, tuple[Path, Path]]:
    """Split number -> (trainlist, testlist); raises when one of a pair is missing."""
    found: dict[int, dict[str, Path]] = {}
    for p in sorted(ann.iterdir()):
        m = _SPLIT_FILE.match(p.name)
        if m and p.is_file():
            found.setdefault(int(m.group(2)), {})[m.group(1)] = p
    out = {}
    for n, pair in sorted(found.items()):
        for kind in ("train", "test"):
            if kind not in pair:
                raise ManifestError(f"{ann}: split {n} has no {kind}list0{n}.txt")
        out[n] = (pair["train"], pair["test"])
    if not out:
        raise ManifestError(f"{ann}: no trainlist0N.txt / testlist0N.txt split files found")
    return out


def parse_ucf101(
    root: str | Path,
    *,
    video_dir: str = "UCF-101",
    annotation_dir: str = "ucfTrainTestlist",
    expected_counts: bool | ExpectedCounts = True,
    allow_missing: bool = False,
    dataset: str = "ucf101",
    classes: list[str] | None = None,
) -> Manifest:
    """Build the UCF101 manifest from the official lists, checking files and (by default) counts.

    `classes`, when given, must equal classInd.txt (used by the synthetic dataset's own check).
    A root holding `synthetic.json` (a `csvr synth` dataset) is checked against the counts it states.
    """
    root = Path(root)
    require_dir(root, f"{dataset} root")
    vroot = require_dir(root / video_dir, f"{dataset} video folder ({video_dir}/)")
    ann = require_dir(root / annotation_dir, f"{dataset} annotation folder ({annotation_dir}/)")
    class_list = read_class_index(ann / "classInd.txt")
    if classes is not None and list(classes) != class_list:
        raise ManifestError(
            f"{ann / 'classInd.txt'}: classes {class_list[:5]}... differ from the expected {list(classes)[:5]}..."
        )
    by_name = {c: i for i, c in enumerate(class_list)}
    by_lower = {c.lower(): i for i, c in enumerate(class_list)}

    skipped: dict = {}
    on_disk = index_files(vroot, skipped=skipped)
    disk_set = set(on_disk)
    disk_lower = {p.lower(): p for p in on_disk}

    listed: dict[str, dict[int, str]] = {}  # disk-resolved relative path (under video_dir) -> splits
    unresolved: dict[str, str] = {}  # listed path not found -> the list file naming it
    for n, (train_file, test_file) in find_split_files(ann).items():
        for kind, path in (("train", train_file), ("test", test_file)):
            for lineno, line in read_lines(path):
                parts = line.split()
                rel = parts[0].replace("\\", "/")
                cls = rel.split("/", 1)[0] if "/" in rel else ""
                label = by_name.get(cls, by_lower.get(cls.lower()))
                if label is None:
                    raise ManifestError(f"{path}:{lineno}: class folder {cls!r} of {rel!r} is not in classInd.txt")
                if kind == "train" and len(parts) > 1:
                    if not parts[1].isdigit() or int(parts[1]) != label + 1:
                        raise ManifestError(
                            f"{path}:{lineno}: label {parts[1]!r} of {rel!r} != classInd index {label + 1} of {cls!r}"
                        )
                resolved = rel if rel in disk_set else disk_lower.get(rel.lower(), rel)
                if resolved not in disk_set:
                    unresolved.setdefault(resolved, path.name)
                splits = listed.setdefault(resolved, {})
                if n in splits and splits[n] != kind:
                    raise ManifestError(f"{path}:{lineno}: {rel!r} is in both the train and test list of split {n}")
                splits[n] = kind

    split_numbers = sorted({n for s in listed.values() for n in s})
    partial = [f"{rel} (split {n})" for rel, s in listed.items() for n in split_numbers if n not in s]
    if partial:
        raise ManifestError(
            f"{dataset} at {root}: videos missing from both the train and the test list of a split: "
            f"{name_list(partial)}"
        )
    missing = sorted(unresolved)
    extra = sorted(disk_set - set(listed))
    if missing and not allow_missing:
        raise missing_error(dataset, root, [f"{video_dir}/{p}" for p in missing], f"the lists in {annotation_dir}/")
    if extra:
        log.warning("%s: %d video(s) on disk are in no list (ignored): %s", dataset, len(extra), name_list(extra, 5))

    videos = []
    for rel, splits in listed.items():
        if rel in unresolved:
            continue
        label = by_name.get(rel.split("/")[0], by_lower.get(rel.split("/")[0].lower()))
        videos.append(VideoEntry(f"{video_dir}/{rel}", label, class_list[label], dict(splits)))
    manifest = Manifest(
        dataset=dataset,
        root=root,
        classes=class_list,
        videos=videos,
        meta={"missing": [f"{video_dir}/{p}" for p in missing], "extra": [f"{video_dir}/{p}" for p in extra],
              "skipped": skipped},
    )
    official = OFFICIAL
    info_path = root / "synthetic.json"
    if expected_counts is True and classes is None and info_path.is_file():
        # A `csvr synth` dataset in UCF101 layout states its own counts: check against those.
        import json

        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{info_path}: not valid JSON: {exc}") from exc
        official = expected_from_info(info, info_path)
        log.info("%s: %s found, checking its counts instead of UCF101's", dataset, info_path)
    expected = resolve_expected(expected_counts, official)
    if expected is not None:
        expected = ExpectedCounts(
            expected.videos, expected.classes, {k: v for k, v in expected.splits.items() if k in split_numbers}
        )
        manifest.check_counts(
            expected, hint=mismatch_hint([f"{video_dir}/{p}" for p in missing], [f"{video_dir}/{p}" for p in extra])
        )
    return manifest
