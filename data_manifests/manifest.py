"""The manifest: which videos a dataset has, their labels and split membership.

A manifest is the one artifact `preprocess` reads to know what to do, so it is canonical: videos are
sorted by path, the CSV form is byte-stable, and `digest()` (sha256 of that CSV) identifies it in stores.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from csvr.contracts import atomic_write_bytes

SPLIT_VALUES: tuple[str, ...] = ("train", "test", "unused")
BASE_COLUMNS: tuple[str, ...] = ("path", "label", "label_name")
DEFAULT_SPLIT_COLUMNS: tuple[int, ...] = (1, 2, 3)


class ManifestError(ValueError):
    """Annotation files or video files do not match what the dataset should contain."""


@dataclass
class VideoEntry:
    """One video: POSIX path relative to the manifest root, label index and name, split membership."""

    path: str
    label: int
    label_name: str
    splits: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExpectedCounts:
    """Counts a complete copy of a dataset must have; `splits` maps split number -> {value: count}."""

    videos: int | None = None
    classes: int | None = None
    splits: Mapping[int, Mapping[str, int]] = field(default_factory=dict)


@dataclass
class Manifest:
    """The videos of a dataset (sorted by path), its class list (label = position) and metadata."""

    dataset: str
    root: Path
    classes: list[str]
    videos: list[VideoEntry]
    meta: dict = field(default_factory=dict)  # parser notes, e.g. missing-video counts (not in the CSV)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.videos = sorted(self.videos, key=lambda v: v.path)
        self.validate()

    def validate(self) -> None:
        """Raise ManifestError on duplicate paths, bad labels, unknown split values or unsafe paths."""
        problems: list[str] = []
        seen: set[str] = set()
        for v in self.videos:
            if v.path in seen:
                problems.append(f"duplicate path {v.path!r}")
            seen.add(v.path)
            if not v.path or v.path.startswith("/") or "\\" in v.path or ".." in v.path.split("/"):
                problems.append(f"path {v.path!r} is not a relative POSIX path inside the root")
            if not 0 <= v.label < len(self.classes):
                problems.append(f"{v.path!r}: label {v.label} outside 0..{len(self.classes) - 1}")
            elif self.classes[v.label] != v.label_name:
                problems.append(
                    f"{v.path!r}: label_name {v.label_name!r} != classes[{v.label}] {self.classes[v.label]!r}"
                )
            for s, value in v.splits.items():
                if not isinstance(s, int) or s < 1:
                    problems.append(f"{v.path!r}: split number {s!r} is not a positive int")
                if value not in SPLIT_VALUES:
                    problems.append(f"{v.path!r}: split{s} value {value!r} not in {SPLIT_VALUES}")
        if len(set(self.classes)) != len(self.classes):
            problems.append("class names are not unique")
        if problems:
            raise ManifestError(f"{self.dataset} manifest invalid: " + _summarise(problems))

    # ---- queries ---------------------------------------------------------------------------------
    @property
    def split_numbers(self) -> list[int]:
        """Split numbers defined for at least one video, ascending."""
        return sorted({s for v in self.videos for s in v.splits})

    def split_counts(self, split: int) -> dict[str, int]:
        """Number of videos per split value ("train", "test", "unused") in split `split`."""
        counts = {value: 0 for value in SPLIT_VALUES}
        for v in self.videos:
            value = v.splits.get(split)
            if value is not None:
                counts[value] += 1
        return counts

    def class_counts(self) -> list[int]:
        """Number of videos per label index."""
        counts = [0] * len(self.classes)
        for v in self.videos:
            counts[v.label] += 1
        return counts

    def select(self, split: int, value: str) -> list[VideoEntry]:
        """The videos whose split `split` is `value` (e.g. select(1, "train"))."""
        return [v for v in self.videos if v.splits.get(split) == value]

    # ---- CSV -------------------------------------------------------------------------------------
    def _split_columns(self) -> list[int]:
        return sorted(set(DEFAULT_SPLIT_COLUMNS) | set(self.split_numbers))

    def to_csv_text(self) -> str:
        """The canonical CSV: header `path,label,label_name,split1,split2,split3`, '\\n' line ends."""
        buf = io.StringIO()
        split_cols = self._split_columns()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([*BASE_COLUMNS, *(f"split{s}" for s in split_cols)])
        for v in self.videos:
            writer.writerow([v.path, v.label, v.label_name, *(v.splits.get(s, "") for s in split_cols)])
        return buf.getvalue()

    def digest(self) -> str:
        """sha256 (hex) of the canonical CSV: identifies the exact video list, labels and splits."""
        return hashlib.sha256(self.to_csv_text().encode("utf-8")).hexdigest()

    def to_csv(self, path: str | Path) -> Path:
        """Write the canonical CSV (UTF-8) to `path`, creating parent folders; returns the path."""
        return atomic_write_bytes(path, self.to_csv_text().encode("utf-8"))

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        root: str | Path,
        *,
        dataset: str | None = None,
        classes: list[str] | None = None,
    ) -> Manifest:
        """Read a manifest CSV. Classes are rebuilt from (label, label_name) unless given."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ManifestError(f"cannot read manifest {path}: {exc}") from exc
        rows = list(csv.reader(io.StringIO(text)))
        if not rows or tuple(rows[0][:3]) != BASE_COLUMNS:
            raise ManifestError(f"{path}: header must start with {','.join(BASE_COLUMNS)}, got {rows[:1]}")
        header = rows[0]
        split_cols: list[tuple[int, int]] = []
        for i, name in enumerate(header[3:], start=3):
            if not (name.startswith("split") and name[5:].isdigit()):
                raise ManifestError(f"{path}: unexpected column {name!r}")
            split_cols.append((i, int(name[5:])))
        videos: list[VideoEntry] = []
        names: dict[int, str] = {}
        for lineno, row in enumerate(rows[1:], start=2):
            if len(row) != len(header):
                raise ManifestError(f"{path}:{lineno}: expected {len(header)} fields, got {len(row)}")
            try:
                label = int(row[1])
            except ValueError as exc:
                raise ManifestError(f"{path}:{lineno}: label {row[1]!r} is not an integer") from exc
            if names.setdefault(label, row[2]) != row[2]:
                raise ManifestError(f"{path}:{lineno}: label {label} named both {names[label]!r} and {row[2]!r}")
            splits = {s: row[i] for i, s in split_cols if row[i] != ""}
            videos.append(VideoEntry(row[0], label, row[2], splits))
        if classes is None:
            n = max(names, default=-1) + 1
            gaps = [i for i in range(n) if i not in names]
            if gaps:
                raise ManifestError(
                    f"{path}: labels {gaps[:10]} have no video, so their names are unknown; pass classes="
                )
            classes = [names[i] for i in range(n)]
        if dataset is None:
            dataset = path.stem.removeprefix("manifest-")
        return cls(dataset=dataset, root=Path(root), classes=list(classes), videos=videos)

    # ---- checks ----------------------------------------------------------------------------------
    def check_counts(self, expected: ExpectedCounts, *, hint: str = "") -> None:
        """Raise ManifestError listing every count that differs from `expected` (plus `hint`)."""
        problems: list[str] = []
        if expected.classes is not None and len(self.classes) != expected.classes:
            problems.append(f"{len(self.classes)} classes, expected {expected.classes}")
        if expected.videos is not None and len(self.videos) != expected.videos:
            problems.append(f"{len(self.videos)} videos, expected {expected.videos}")
        for split, want in sorted(expected.splits.items()):
            got = self.split_counts(split)
            for value, n in want.items():
                if got.get(value, 0) != n:
                    problems.append(f"split {split}: {got.get(value, 0)} {value}, expected {n}")
        if problems:
            msg = f"{self.dataset} at {self.root}: count check failed: " + "; ".join(problems)
            if hint:
                msg += ". " + hint
            msg += ". (For a partial copy, pass expected_counts=False / --no-strict.)"
            raise ManifestError(msg)


def _summarise(items: Iterable[str], limit: int = 10) -> str:
    """Join up to `limit` items and say how many more there are."""
    items = list(items)
    head = "; ".join(items[:limit])
    return head + (f"; ... and {len(items) - limit} more" if len(items) > limit else "")


def name_list(paths: Iterable[str], limit: int = 10) -> str:
    """A short, readable list of file names for error messages: first `limit` and a count."""
    paths = sorted(paths)
    shown = ", ".join(repr(p) for p in paths[:limit])
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return f"{len(paths)} file(s): {shown}{more}"
