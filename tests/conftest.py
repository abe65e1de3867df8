"""Shared fixtures: a tiny synthetic dataset and its preprocessed store, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_CLIPS = REPO.parent / "shared" / "data" / "real-clips"

# Keep every test process light on this 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def real_clips() -> Path:
    """The shared real videos; skips the test when ../shared is absent."""
    if not (REAL_CLIPS / "clips.csv").exists():
        pytest.skip(f"real clips not available at {REAL_CLIPS}")
    return REAL_CLIPS


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A tiny synthetic dataset: 4 classes x 4 videos, short clips, native GOP of 12."""
    from csvr.data_manifests.synthetic import generate

    out = tmp_path_factory.mktemp("synthetic") / "data"
    generate(out, videos_per_class=4, seed=0, num_classes=4, seconds=(1.6, 2.0))
    return out


@pytest.fixture(scope="session")
def synthetic_store(synthetic_root, tmp_path_factory) -> Path:
    """`synthetic_root` preprocessed with ground-truth poses into a complete store."""
    from csvr.data_manifests import build_manifest
    from csvr.preprocess.pipeline import preprocess_dataset

    store = tmp_path_factory.mktemp("stores") / "synthetic.zarr"
    preprocess_dataset(build_manifest("synthetic", root=synthetic_root), store, pose="groundtruth", workers=1)
    return store
