"""Kinetics-400: annotation CSVs (`youtube_id,time_start,time_end,split,label`, any column order) and
videos named `<youtube_id>_<start:06d>_<end:06d>.mp4`.

Accepted layouts (found by indexing every video file under the root by its name): `<split>/<label>/`
(label with spaces or underscores), flat `<split>/` (the CVDF mirror), or anything else; a file named
just `<youtube_id>.<ext>` is accepted too. Videos vanish from YouTube, so missing videos are normal:
they are counted per split, reported, and left out, never fatal. Split 1: train -> "train",
val/validate -> "test", test -> "unused" (rows without a label are skipped).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path

from csvr.data_manifests.manifest import ExpectedCounts, Manifest, ManifestError, VideoEntry
from csvr.data_manifests.parsers._common import index_files, require_dir, resolve_expected

log = logging.getLogger(__name__)

OFFICIAL = ExpectedCounts(classes=400)  # video counts vary with what is still downloadable
SPLIT_MAP = {
    "train": "train",
    "training": "train",
    "val": "test",
    "valid": "test",
    "validate": "test",
    "validation": "test",
    "test": "unused",
    "testing": "unused",
}
REQUIRED = ("youtube_id", "time_start", "time_end", "split", "label")


def _find_csvs(root: Path, annotation_dir: str | None) -> list[Path]:
    if annotation_dir is not None:
        base = require_dir(root / annotation_dir, "kinetics400 annotation folder")
        csvs = sorted(base.glob("*.csv"))
    else:
        csvs = []
        for base in (root / "annotations", root):
            if base.is_dir():
                csvs = sorted(p for p in base.glob("*.csv") if not p.name.startswith("manifest"))
                if csvs:
                    break
    if not csvs:
        raise ManifestError(f"kinetics400 at {root}: no annotation CSVs (annotations/*.csv or *.csv) found")
    return csvs


def clip_stem(youtube_id: str, start: float, end: float) -> str:
    """The standard clip file stem `<youtube_id>_<start:06d>_<end:06d>`."""
    return f"{youtube_id}_{int(round(start)):06d}_{int(round(end)):06d}"


def parse_kinetics400(
    root: str | Path,
    *,
    annotation_dir: str | None = None,
    expected_counts: bool | ExpectedCounts = True,
    dataset: str = "kinetics400",
) -> Manifest:
    """Build the Kinetics manifest; missing videos are recorded in `meta["missing"]` (per split)."""
    root = Path(root)
    require_dir(root, f"{dataset} root")
    rows: list[tuple[str, str, str, str, int]] = []  # stem, youtube_id, split value, label, line
    labels: set[str] = set()
    unlabelled = 0
    for path in _find_csvs(root, annotation_dir):
        text = path.read_text(encoding="utf-8-sig")
        reader = csv.DictReader(io.StringIO(text))
        fields = [f.strip() for f in (reader.fieldnames or [])]
        absent = [c for c in REQUIRED if c != "label" and c not in fields]  # test CSVs may lack labels
        if absent:
            raise ManifestError(f"{path}: missing column(s) {absent}; header is {fields}")
        for lineno, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            split = SPLIT_MAP.get(row["split"].lower())
            if split is None:
                raise ManifestError(f"{path}:{lineno}: unknown split {row['split']!r}")
            label = row.get("label", "")
            if not label:
                unlabelled += 1
                continue
            try:
                stem = clip_stem(row["youtube_id"], float(row["time_start"]), float(row["time_end"]))
            except ValueError as exc:
                raise ManifestError(f"{path}:{lineno}: bad time_start/time_end: {exc}") from exc
            labels.add(label)
            rows.append((stem, row["youtube_id"], split, label, lineno))
    classes = sorted(labels)
    label_of = {c: i for i, c in enumerate(classes)}

    by_stem: dict[str, list[str]] = {}
    skipped: dict = {}
    for rel in index_files(root, skipped=skipped):
        by_stem.setdefault(os.path.splitext(rel.rsplit("/", 1)[-1])[0], []).append(rel)

    def pick(stem: str, youtube_id: str, label: str) -> str | None:
        cands = by_stem.get(stem) or by_stem.get(youtube_id) or []
        if len(cands) > 1:  # prefer the copy inside a folder named after the label
            named = [c for c in cands if label in c or label.replace(" ", "_") in c]
            cands = named or cands
        return cands[0] if cands else None

    videos: dict[str, VideoEntry] = {}
    missing: dict[str, list[str]] = {}
    for stem, youtube_id, split, label, _ in rows:
        rel = pick(stem, youtube_id, label)
        if rel is None:
            missing.setdefault(split, []).append(stem)
            continue
        if rel in videos:
            log.warning("%s: %s listed more than once; keeping the first row", dataset, rel)
            continue
        videos[rel] = VideoEntry(rel, label_of[label], label, {1: split})
    total = len(rows)
    n_missing = sum(len(v) for v in missing.values())
    if n_missing:
        log.warning(
            "%s: %d of %d annotated clips are missing on disk (%s); they are left out",
            dataset,
            n_missing,
            total,
            ", ".join(f"{k}: {len(v)}" for k, v in sorted(missing.items())),
        )
    manifest = Manifest(
        dataset,
        root,
        classes,
        list(videos.values()),
        meta={"annotated": total, "missing": {k: sorted(v) for k, v in missing.items()}, "unlabelled": unlabelled,
              "skipped": skipped},
    )
    expected = resolve_expected(expected_counts, OFFICIAL)
    if expected is not None:
        manifest.check_counts(expected)
    return manifest
