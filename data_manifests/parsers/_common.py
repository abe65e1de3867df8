"""Helpers shared by the dataset parsers: reading annotation text, indexing files, count policies."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from csvr.data_manifests.manifest import ExpectedCounts, ManifestError, name_list

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v", ".flv", ".wmv", ".3gp", ".ogv"}
)


def require_dir(path: Path, what: str) -> Path:
    """Return `path` if it is a folder, else raise ManifestError saying what was expected there."""
    if not path.is_dir():
        raise ManifestError(f"{what} not found: {path} is not a folder")
    return path


def require_file(path: Path, what: str) -> Path:
    """Return `path` if it is a file, else raise ManifestError saying what was expected there."""
    if not path.is_file():
        raise ManifestError(f"{what} not found: {path} is missing")
    return path


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty, stripped lines with 1-based line numbers; UTF-8 (BOM ok), Latin-1 as a fallback."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
        log.warning("%s is not UTF-8; read as Latin-1", path)
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def index_files(
    base: Path, *, extensions: Iterable[str] | None = VIDEO_EXTENSIONS, skip_dirs: Iterable[Path] = (),
    skipped: dict | None = None,
) -> list[str]:
    """All files under `base` (recursively, sorted) as POSIX paths relative to `base`.

    Hidden files and folders are skipped; `extensions` (lower-case, with dot) filters when given. When
    `skipped` is a dict, what was left out is counted into it: files by extension (`by_extension`),
    hidden entries (`hidden`), and folders named like videos (`video_named_dirs`, e.g. `x.avi/`).
    """
    exts = None if extensions is None else {e.lower() for e in extensions}
    skip = {os.path.realpath(p) for p in skip_dirs}
    base_str = os.fspath(base)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(base_str):
        if skipped is not None:
            _count_dirs(skipped, base_str, dirpath, dirnames, exts)
        dirnames[:] = sorted(
            n
            for n in dirnames
            if not n.startswith(".") and (not skip or os.path.realpath(os.path.join(dirpath, n)) not in skip)
        )
        rel_dir = os.path.relpath(dirpath, base_str)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        for name in filenames:
            if name.startswith("."):
                if skipped is not None:
                    skipped["hidden"] = skipped.get("hidden", 0) + 1
                continue
            ext = os.path.splitext(name)[1].lower()
            if exts is not None and ext not in exts:
                if skipped is not None:
                    by_ext = skipped.setdefault("by_extension", {})
                    by_ext[ext or "(none)"] = by_ext.get(ext or "(none)", 0) + 1
                continue
            out.append(prefix + name)
    return sorted(out)


def _count_dirs(skipped: dict, base: str, dirpath: str, dirnames: list[str], exts: set[str] | None) -> None:
    for n in dirnames:
        if n.startswith("."):
            skipped["hidden"] = skipped.get("hidden", 0) + 1
        elif os.path.splitext(n)[1].lower() in (exts or VIDEO_EXTENSIONS):
            rel = os.path.relpath(os.path.join(dirpath, n), base).replace(os.sep, "/")
            skipped.setdefault("video_named_dirs", []).append(rel + "/")
            log.warning("%s: a folder named like a video, not a video file: its contents are indexed as files",
                        os.path.join(dirpath, n))



def resolve_expected(expected_counts: bool | ExpectedCounts | None, official: ExpectedCounts) -> ExpectedCounts | None:
    """Map the `expected_counts` argument of a parser to the counts to check (None = no check)."""
    if expected_counts is True:
        return official
    if expected_counts is False or expected_counts is None:
        return None
    if isinstance(expected_counts, ExpectedCounts):
        return expected_counts
    raise TypeError(f"expected_counts must be True, False or ExpectedCounts, got {expected_counts!r}")


def missing_error(dataset: str, root: Path, missing: list[str], source: str) -> ManifestError:
    """The error for videos named by the annotations but absent on disk."""
    return ManifestError(
        f"{dataset} at {root}: {source} name videos that are not on disk: {name_list(missing)}. "
        "Re-extract the archive, or pass allow_missing=True / --allow-missing to build a manifest "
        "of the videos that are present."
    )


def mismatch_hint(missing: list[str], extra: list[str]) -> str:
    """Text naming missing and extra files, appended to count-check errors."""
    parts = []
    if missing:
        parts.append(f"missing on disk: {name_list(missing)}")
    if extra:
        parts.append(f"on disk but in no annotation file: {name_list(extra)}")
    return "; ".join(parts)


def expected_from_info(info: dict, path: Path) -> ExpectedCounts:
    """Expected counts stated by a synthetic.json (classes always; videos/splits when recorded)."""
    classes = info.get("classes")
    if not isinstance(classes, list) or not classes:
        raise ManifestError(f"{path}: 'classes' must be a non-empty list")
    counts = info.get("counts") or {}
    options = info.get("options") or {}
    videos = counts.get("videos")
    vpc = info.get("videos_per_class", options.get("videos_per_class"))
    if videos is None and vpc is not None:
        videos = int(vpc) * len(classes)
    splits = {}
    if "train" in counts and "test" in counts:
        splits[1] = {"train": int(counts["train"]), "test": int(counts["test"])}
    return ExpectedCounts(videos=videos, classes=len(classes), splits=splits)
