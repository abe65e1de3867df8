"""HMDB51 as distributed: `<class>/<name>.avi` + `testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt`.

Each split file line is "<video name> <0|1|2>" (0 = unused, 1 = train, 2 = test). Classes are the
51 class names in sorted order (the order torchvision and most codebases use). Video names contain
characters such as `()`, `!`, `+`, `&`, `;`, `'` and are kept byte-for-byte.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from csvr.data_manifests.manifest import ExpectedCounts, Manifest, ManifestError, VideoEntry, name_list
from csvr.data_manifests.parsers._common import (
    index_files,
    mismatch_hint,
    missing_error,
    read_lines,
    require_dir,
    resolve_expected,
)

log = logging.getLogger(__name__)

# 70 training and 30 test clips per class in each of the three splits; the rest are "unused".
OFFICIAL = ExpectedCounts(videos=6766, classes=51, splits={n: {"train": 3570, "test": 1530} for n in (1, 2, 3)})
SPLIT_CODES = {"0": "unused", "1": "train", "2": "test"}
_SPLIT_FILE = re.compile(r"^(.+)_test_split(\d+)\.txt$")


def parse_hmdb51(
    root: str | Path,
    *,
    video_dir: str = "",
    split_dir: str = "testTrainMulti_7030_splits",
    expected_counts: bool | ExpectedCounts = True,
    allow_missing: bool = False,
    dataset: str = "hmdb51",
) -> Manifest:
    """Build the HMDB51 manifest from the official split files, checking files and (by default) counts.

    Videos are looked up at `root/video_dir/<class>/<name>` (video_dir "" = class folders in root).
    """
    root = Path(root)
    require_dir(root, f"{dataset} root")
    sdir = require_dir(root / split_dir, f"{dataset} split folder ({split_dir}/)")
    vroot = require_dir(root / video_dir if video_dir else root, f"{dataset} video folder")
    prefix = f"{video_dir.strip('/')}/" if video_dir else ""

    entries: dict[str, tuple[str, dict[int, str]]] = {}  # rel path -> (class, splits)
    split_files: dict[str, set[int]] = {}
    for path in sorted(sdir.iterdir()):
        m = _SPLIT_FILE.match(path.name)
        if not m or not path.is_file():
            continue
        cls, n = m.group(1), int(m.group(2))
        split_files.setdefault(cls, set()).add(n)
        for lineno, line in read_lines(path):
            name, _, code = line.rpartition(" ")
            name, code = name.strip(), code.strip()
            if not name or code not in SPLIT_CODES:
                raise ManifestError(f"{path}:{lineno}: expected '<video name> <0|1|2>', got {line!r}")
            rel = f"{prefix}{cls}/{name}"
            _, splits = entries.setdefault(rel, (cls, {}))
            if splits.get(n, SPLIT_CODES[code]) != SPLIT_CODES[code]:
                raise ManifestError(f"{path}:{lineno}: {name!r} listed twice with different codes")
            splits[n] = SPLIT_CODES[code]
    if not split_files:
        raise ManifestError(f"{sdir}: no <class>_test_split<N>.txt files found")
    all_splits = sorted(set().union(*split_files.values()))
    incomplete = [f"{c}_test_split{n}.txt" for c, ns in sorted(split_files.items()) for n in all_splits if n not in ns]
    if incomplete:
        raise ManifestError(f"{sdir}: split files missing: {name_list(incomplete)}")

    classes = sorted(split_files)
    label_of = {c: i for i, c in enumerate(classes)}
    class_dirs = [vroot / c for c in classes]
    skipped: dict = {}
    on_disk = {prefix + p for p in index_files(vroot, skip_dirs=[sdir], skipped=skipped)}
    missing = sorted(set(entries) - on_disk)
    extra = sorted(p for p in on_disk - set(entries) if p[len(prefix) :].split("/")[0] in label_of)
    if missing and not allow_missing:
        absent_dirs = [str(d) for d in class_dirs if not d.is_dir()]
        if absent_dirs:
            log.error("%s: class folders absent: %s", dataset, ", ".join(absent_dirs[:5]))
        raise missing_error(dataset, root, missing, f"the split files in {split_dir}/")
    if extra:
        log.warning(
            "%s: %d video(s) on disk are in no split file (ignored): %s", dataset, len(extra), name_list(extra, 5)
        )

    missing_set = set(missing)
    videos = [
        VideoEntry(rel, label_of[cls], cls, dict(splits))
        for rel, (cls, splits) in entries.items()
        if rel not in missing_set
    ]
    manifest = Manifest(dataset, root, classes, videos, meta={"missing": missing, "extra": extra, "skipped": skipped})
    expected = resolve_expected(expected_counts, OFFICIAL)
    if expected is not None:
        expected = ExpectedCounts(
            expected.videos, expected.classes, {k: v for k, v in expected.splits.items() if k in all_splits}
        )
        manifest.check_counts(expected, hint=mismatch_hint(missing, extra))
    return manifest
