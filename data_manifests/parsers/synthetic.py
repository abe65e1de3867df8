"""The synthetic dataset of `csvr synth`: the UCF101 layout plus `synthetic.json`.

Parsed with the UCF101 parser; the expected class list and counts come from `synthetic.json`
(`classes`, and `counts` {videos, train, test} or `videos_per_class`), so the check is as strict as
for the real dataset. Paths are `UCF-101/<Class>/v_<Class>_gXX_cYY.avi`, relative to the root.
"""

from __future__ import annotations

import json
from pathlib import Path

from csvr.data_manifests.manifest import ExpectedCounts, Manifest, ManifestError
from csvr.data_manifests.parsers._common import expected_from_info, require_file
from csvr.data_manifests.parsers.ucf101 import parse_ucf101

INFO_FILE = "synthetic.json"


def parse_synthetic(
    root: str | Path,
    *,
    expected_counts: bool | ExpectedCounts = True,
    allow_missing: bool = False,
    dataset: str = "synthetic",
) -> Manifest:
    """Build the manifest of a generated synthetic dataset, checked against its synthetic.json."""
    root = Path(root)
    info_path = require_file(root / INFO_FILE, f"{dataset} description ({INFO_FILE}, written by `csvr synth`)")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{info_path}: not valid JSON: {exc}") from exc
    expected = expected_from_info(info, info_path)
    if expected_counts is False:
        check: bool | ExpectedCounts = False
    elif isinstance(expected_counts, ExpectedCounts):
        check = expected_counts
    else:
        check = expected
    manifest = parse_ucf101(
        root, expected_counts=check, allow_missing=allow_missing, dataset=dataset, classes=list(info["classes"])
    )
    manifest.meta["groups"] = dict(info.get("groups") or {})
    return manifest
