"""Something-Something v2 as distributed: `labels.json` (template -> id), `train.json` and
`validation.json` (lists of {id, label, template, placeholders}) and videos `<id>.webm`.

The `label` field of a train/validation item has the placeholders filled in ("putting a pen on a
table"), so the class is found from `template` with its brackets removed ("Putting something on a
surface"), which is the key of `labels.json`. File names with the official prefix
(`something-something-v2-labels.json` ...) are accepted too. Split 1: train -> "train",
validation -> "test".
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from csvr.data_manifests.manifest import ExpectedCounts, Manifest, ManifestError, VideoEntry
from csvr.data_manifests.parsers._common import index_files, missing_error, require_dir, resolve_expected

log = logging.getLogger(__name__)

OFFICIAL = ExpectedCounts(videos=168913 + 24777, classes=174, splits={1: {"train": 168913, "test": 24777}})
PREFIX = "something-something-v2-"


def _find(root: Path, name: str) -> Path:
    for base in (root, root / "annotations", root / "labels"):
        for candidate in (base / name, base / f"{PREFIX}{name}"):
            if candidate.is_file():
                return candidate
    raise ManifestError(f"ssv2 at {root}: {name} (or {PREFIX}{name}) not found in the root, annotations/ or labels/")


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: not readable JSON: {exc}") from exc


def template_to_class(template: str) -> str:
    """'Putting [something] on [something]' -> 'Putting something on something'."""
    return template.replace("[", "").replace("]", "")


def parse_ssv2(
    root: str | Path,
    *,
    expected_counts: bool | ExpectedCounts = True,
    allow_missing: bool = False,
    dataset: str = "ssv2",
) -> Manifest:
    """Build the SSv2 manifest (174 classes ordered by their labels.json id)."""
    root = Path(root)
    require_dir(root, f"{dataset} root")
    labels_path = _find(root, "labels.json")
    labels = _load_json(labels_path)
    if not isinstance(labels, dict):
        raise ManifestError(f"{labels_path}: expected an object mapping class name -> id")
    try:
        ids = {name: int(i) for name, i in labels.items()}
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"{labels_path}: class ids must be integers: {exc}") from exc
    if sorted(ids.values()) != list(range(len(ids))):
        raise ManifestError(f"{labels_path}: ids must be 0..{len(ids) - 1} without gaps or repeats")
    classes = [name for name, _ in sorted(ids.items(), key=lambda kv: kv[1])]

    by_stem: dict[str, str] = {}
    skipped: dict = {}
    for rel in index_files(root, skipped=skipped):
        by_stem.setdefault(os.path.splitext(rel.rsplit("/", 1)[-1])[0], rel)

    videos: list[VideoEntry] = []
    missing: list[str] = []
    for name, split in (("train.json", "train"), ("validation.json", "test")):
        path = _find(root, name)
        items = _load_json(path)
        if not isinstance(items, list):
            raise ManifestError(f"{path}: expected a list of {{id, label, template, placeholders}}")
        for k, item in enumerate(items):
            try:
                vid, template = str(item["id"]), item["template"]
            except (KeyError, TypeError) as exc:
                raise ManifestError(f"{path}: item {k} lacks 'id' or 'template': {item!r}") from exc
            cls = template_to_class(template)
            if cls not in ids:
                raise ManifestError(
                    f"{path}: item {k} (id {vid}): template {template!r} -> {cls!r} not in {labels_path.name}"
                )
            rel = by_stem.get(vid)
            if rel is None:
                missing.append(f"{vid}.webm")
                continue
            videos.append(VideoEntry(rel, ids[cls], cls, {1: split}))
    if missing and not allow_missing:
        raise missing_error(dataset, root, missing, "train.json/validation.json")
    manifest = Manifest(dataset, root, classes, videos, meta={"missing": sorted(missing), "skipped": skipped})
    expected = resolve_expected(expected_counts, OFFICIAL)
    if expected is not None:
        manifest.check_counts(expected)
    return manifest
