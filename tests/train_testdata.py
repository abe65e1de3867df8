"""Shared helpers for the trainer tests: a small synthetic store built by the real pipeline, tiny configs.

The store is built once per test session (generate -> preprocess with ground-truth poses), 4 classes
with distinct motions, so a pose-only fine-tune can beat chance in seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TINY_PRETRAIN = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "tiny.yaml"
TINY_FINETUNE = Path(__file__).resolve().parents[1] / "configs" / "finetune" / "tiny.yaml"

# even smaller than configs/*/tiny.yaml: fast on a shared 2-core CPU
FAST = (
    "batch_size=4", "data.frames=4", "data.future_frames=4", "data.crop=32", "data.num_workers=0",
    "data.max_iframes=2", "model.video_size=16", "model.embed_dim=32", "model.noise_dim=8",
    "model.options.head_hidden=32", "model.options.pose_hidden=16", "model.options.gen_channels=16",
    "model.options.disc_width=4", "run.threads=1", "run.image_every=0", "run.tensorboard=false",
)


_STORES: dict[str, Path] = {}


@pytest.fixture(scope="session")
def train_store(tmp_path_factory) -> Path:
    """A complete csvr-store/1 store of a 4-class synthetic dataset (16 train / 8 test videos).

    Each test module imports this fixture, which gives it one fixture definition per module; the
    module-level cache makes the store get built once per test session all the same.
    """
    key = str(tmp_path_factory.getbasetemp())
    if key not in _STORES:
        _STORES[key] = _build_store(tmp_path_factory)
    return _STORES[key]


def _build_store(tmp_path_factory) -> Path:
    from csvr.data_manifests import build_manifest
    from csvr.data_manifests.synthetic import generate
    from csvr.preprocess.pipeline import preprocess_dataset

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("train_synth") / "data"
    generate(root, videos_per_class=6, seed=0, num_classes=4, seconds=(2.0, 2.5), size=(96, 128))
    store = tmp_path_factory.mktemp("train_stores") / "synthetic.zarr"
    preprocess_dataset(build_manifest("synthetic", root=root), store, pose="groundtruth", workers=1,
                       frame_size=(48, 64))
    return store


def stage_list(**steps: int) -> list[str]:
    """Overrides that replace the stage list by the given stages (in order), each with its step count."""
    names = list(steps)
    init = {"video": ["pose", "context"], "joint": [n for n in ("pose", "context", "video") if n in names]}
    items = []
    for n in names:
        src = [s for s in init.get(n, []) if s in names[:names.index(n)]]
        items.append(f"{{name: {n}, steps: {steps[n]}, init_from: [{', '.join(src)}]}}")
    return [f"stages=[{', '.join(items)}]"]
