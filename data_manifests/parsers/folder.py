"""Any class-per-folder tree: `<root>/<class>/**/<video>.<ext>`; classes are the sorted folder names.

Splits come from an optional split file, a CSV with header `path,split1[,split2,...]` (paths relative
to the root, values train/test/unused); a manifest CSV works as a split file, and `<root>/splits.csv`
is used when present. Videos the split file does not name get "unused". Without a split file, every
`test_every`-th video of each class (in sorted order, starting with the last) is "test" in split 1,
the rest "train"; test_every=0 puts all videos in "train".
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from csvr.data_manifests.manifest import SPLIT_VALUES, ExpectedCounts, Manifest, ManifestError, VideoEntry, name_list
from csvr.data_manifests.parsers._common import index_files, require_dir, resolve_expected

log = logging.getLogger(__name__)

DEFAULT_SPLIT_FILE = "splits.csv"


def read_split_file(path: Path) -> dict[str, dict[int, str]]:
    """Relative path -> {split number: value} from a `path,split1,...` CSV (extra columns ignored)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ManifestError(f"cannot read split file {path}: {exc}") from exc
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or header[0] != "path":
        raise ManifestError(f"{path}: first column must be 'path' (header: path,split1[,split2,...]), got {header}")
    cols = [(i, int(h[5:])) for i, h in enumerate(header) if h.startswith("split") and h[5:].isdigit()]
    if not cols:
        raise ManifestError(f"{path}: no split<N> column in header {header}")
    out: dict[str, dict[int, str]] = {}
    for lineno, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) < len(header):
            raise ManifestError(f"{path}:{lineno}: expected {len(header)} fields, got {len(row)}")
        splits = {}
        for i, n in cols:
            value = row[i].strip()
            if value == "":
                continue
            if value not in SPLIT_VALUES:
                raise ManifestError(f"{path}:{lineno}: split{n} value {value!r} not in {SPLIT_VALUES}")
            splits[n] = value
        if row[0] in out:
            raise ManifestError(f"{path}:{lineno}: {row[0]!r} listed twice")
        out[row[0]] = splits
    return out


def parse_folder(
    root: str | Path,
    *,
    split_file: str | Path | None = None,
    test_every: int = 0,
    expected_counts: bool | ExpectedCounts = False,
    dataset: str = "folder",
) -> Manifest:
    """Build a manifest of a class-per-folder tree, with splits from `split_file` or `test_every`."""
    root = Path(root)
    require_dir(root, f"{dataset} root")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ManifestError(f"{dataset} at {root}: no class folders")
    videos: list[VideoEntry] = []
    skipped: dict = {}
    for label, cls in enumerate(classes):
        found = index_files(root / cls, skipped=skipped)
        if not found:
            log.warning("%s: class folder %s holds no video files", dataset, root / cls)
        videos += [VideoEntry(f"{cls}/{rel}", label, cls, {}) for rel in found]
    if not videos:
        raise ManifestError(f"{dataset} at {root}: no video files in {len(classes)} class folder(s)")

    if split_file is None and (root / DEFAULT_SPLIT_FILE).is_file():
        split_file = root / DEFAULT_SPLIT_FILE
    if split_file is not None:
        split_path = Path(split_file)
        if not split_path.is_absolute() and not split_path.exists():
            split_path = root / split_path
        table = read_split_file(split_path)
        paths = {v.path for v in videos}
        unknown = sorted(set(table) - paths)
        if unknown:
            raise ManifestError(f"{split_path}: names videos that are not under {root}: {name_list(unknown)}")
        numbers = sorted({n for s in table.values() for n in s})
        unlisted = 0
        for v in videos:
            given = table.get(v.path, {})
            unlisted += v.path not in table
            v.splits = {n: given.get(n, "unused") for n in numbers}
        if unlisted:
            log.warning("%s: %d video(s) not in %s are 'unused'", dataset, unlisted, split_path)
    else:
        if test_every < 0:
            raise ValueError("test_every must be >= 0")
        by_class: dict[int, list[VideoEntry]] = {}
        for v in videos:
            by_class.setdefault(v.label, []).append(v)
        for members in by_class.values():
            members.sort(key=lambda v: v.path)
            n = len(members)
            for k, v in enumerate(members):
                is_test = test_every > 0 and (n - 1 - k) % test_every == 0
                v.splits = {1: "test" if is_test else "train"}
    manifest = Manifest(dataset, root, classes, videos, meta={"skipped": skipped})
    expected = resolve_expected(expected_counts, ExpectedCounts())
    if expected is not None:
        manifest.check_counts(expected)
    return manifest
