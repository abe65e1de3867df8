"""Dataset manifests: the list of videos of a dataset with labels and split membership.

from csvr.data_manifests import build_manifest
m = build_manifest("ucf101", root=Path("data/ucf101"))
"""

from __future__ import annotations

from pathlib import Path

from csvr.data_manifests.manifest import ExpectedCounts, Manifest, ManifestError, VideoEntry

DATASETS: tuple[str, ...] = ("ucf101", "hmdb51", "kinetics400", "ssv2", "folder", "synthetic")


def build_manifest(dataset: str, root: str | Path, **kw) -> Manifest:
    """Parse dataset `dataset` at `root` with its official annotation files.

    Keywords go to the parser (see `data_manifests.parsers`), e.g. `expected_counts=False` for a
    partial copy, `allow_missing=True`, or `split_file=` for `folder`.
    """
    from csvr.data_manifests.parsers import PARSERS

    if dataset not in PARSERS:
        raise ManifestError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    return PARSERS[dataset](Path(root), **kw)


__all__ = ["DATASETS", "ExpectedCounts", "Manifest", "ManifestError", "VideoEntry", "build_manifest"]
