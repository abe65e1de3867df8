"""One parser per dataset format; `PARSERS` maps a dataset name to its `parse_*(root, **kw)` function."""

from __future__ import annotations

from collections.abc import Callable

from csvr.data_manifests.manifest import Manifest
from csvr.data_manifests.parsers.folder import parse_folder
from csvr.data_manifests.parsers.hmdb51 import parse_hmdb51
from csvr.data_manifests.parsers.kinetics400 import parse_kinetics400
from csvr.data_manifests.parsers.ssv2 import parse_ssv2
from csvr.data_manifests.parsers.synthetic import parse_synthetic
from csvr.data_manifests.parsers.ucf101 import parse_ucf101

PARSERS: dict[str, Callable[..., Manifest]] = {
    "ucf101": parse_ucf101,
    "hmdb51": parse_hmdb51,
    "kinetics400": parse_kinetics400,
    "ssv2": parse_ssv2,
    "folder": parse_folder,
    "synthetic": parse_synthetic,
}

__all__ = [
    "PARSERS",
    "parse_folder",
    "parse_hmdb51",
    "parse_kinetics400",
    "parse_ssv2",
    "parse_synthetic",
    "parse_ucf101",
]
