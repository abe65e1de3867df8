"""The trainer's checkpoints as evaluation sees them: locating them in run folders, rebuilding the
networks (through `train`'s public loaders), and deriving the per-row checkpoints of the ablations.

Nothing here trains. Pretraining run folders hold `checkpoints/<stage>/final.pt` per stage and
`checkpoints/final.pt` (the last enabled stage); fine-tuning run folders hold `checkpoints/last.pt`,
the model after the last epoch (docs/training.md, "Run folder"): no checkpoint is selected on the test split.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STAGES = ("pose", "video", "context", "joint")


def pretrain_checkpoint(run: str | Path, stage: str | None = None) -> Path:
    """The pretraining checkpoint of `run` (a run folder or a .pt file): `checkpoints/final.pt`, or the
    final weights of one `stage` (`checkpoints/<stage>/final.pt`)."""
    p = Path(run)
    if p.is_file():
        if stage is not None:
            raise ValueError(f"{p}: a checkpoint file was given; a stage ({stage!r}) needs a run folder")
        return p
    if stage is not None and stage not in STAGES:
        raise ValueError(f"unknown pretraining stage {stage!r}; known: {list(STAGES)}")
    path = p / "checkpoints" / (f"{stage}/final.pt" if stage else "final.pt")
    if not path.is_file():
        what = f"stage {stage!r} of " if stage else ""
        raise FileNotFoundError(f"{path}: no final checkpoint of {what}pretraining run {p} "
                                "(did `csvr pretrain` finish there?)")
    return path


def finetune_checkpoint(run: str | Path) -> Path:
    """The fine-tuning checkpoint of `run` (folder or .pt file): `checkpoints/last.pt`, the model after
    the last epoch. There is no other: picking an epoch by its test accuracy would select the model on
    the test split."""
    p = Path(run)
    if p.is_file():
        return p
    path = p / "checkpoints" / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no fine-tuning checkpoint in {p} (did `csvr finetune` finish there?)")
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """`train.checkpoint.load` (weights-only, format-checked)."""
    from csvr.train.checkpoint import load

    return load(path)


def checkpoint_data_config(path: str | Path) -> dict[str, Any]:
    """The `data` section of the config a checkpoint was trained with (clip recipe, crop)."""
    ck = load_checkpoint(path)
    data = (ck.get("config") or {}).get("data")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: checkpoint carries no config.data (clip recipe unknown)")
    return data


def valid_groups(path: str | Path) -> list[str]:
    """Module groups of a pretraining checkpoint that hold trained weights."""
    ck = load_checkpoint(path)
    return list(ck.get("valid_groups", ck.get("trained_groups", [])))


def merge_stage_checkpoints(paths: Sequence[str | Path], out: str | Path,
                            model_options: dict[str, Any] | None = None) -> Path:
    """Write ONE pretraining checkpoint holding the trained groups of several stage checkpoints of the
    same model (e.g. `pose/final.pt` + `context/final.pt` for Table I's f_i without the video branch).

    Groups are taken from each file's `valid_groups` (later files override earlier ones) and the
    result's `valid_groups` is their union, so `train.finetune` loads exactly those and refuses (or,
    with `allow_random`, randomly initialises) the rest. `model_options` updates
    `model_config.options` (e.g. `{"feature_layer": 2}` for Table III: the pose stage's weights do not
    depend on which encoder layer f_d is later read from). Refuses checkpoints of different models.
    """
    from csvr.train.checkpoint import CheckpointError, save_atomic

    if not paths:
        raise ValueError("merge_stage_checkpoints needs at least one checkpoint")
    cks = [(Path(p), load_checkpoint(p)) for p in paths]
    first_path, first = cks[0]
    for p, ck in cks:
        if ck.get("kind") not in ("pretrain-stage", "pretrain-resume"):
            raise CheckpointError(f"{p}: a {ck.get('kind')!r} checkpoint, not a pretraining checkpoint")
        if ck.get("model_config") != first.get("model_config"):
            raise CheckpointError(f"{p}: model_config differs from {first_path}'s; cannot merge their weights")
    model = dict(first["model"])
    groups: list[str] = []
    for p, ck in cks:
        own = list(ck.get("valid_groups", ck.get("trained_groups", [])))
        for key, value in ck["model"].items():
            if key.split(".", 1)[0] in own:
                model[key] = value
        groups += [g for g in own if g not in groups]
    merged = dict(cks[-1][1])
    merged.update(kind="pretrain-stage", model=model, optimizer=None, scheduler=None,
                  trained_groups=list(groups), valid_groups=list(groups),
                  progress={"stage": "+".join(str(ck.get("progress", {}).get("stage", "?")) for _, ck in cks),
                            "step": 0},
                  merged_from=[str(p) for p, _ in cks])
    if model_options:
        mc = copy.deepcopy(merged.get("model_config") or {})
        mc["options"] = {**(mc.get("options") or {}), **model_options}
        merged["model_config"] = mc
    out = save_atomic(merged, out)
    log.info("merged %s -> %s (groups %s)", [str(p) for p, _ in cks], out, groups)
    return out


def load_pretrained_network(path: str | Path, device: str = "cpu") -> Any:
    """`train.pretrain.load_pretrained_model`: the whole `CSVRModel`, eval mode."""
    from csvr.train.pretrain import load_pretrained_model

    return load_pretrained_model(path, device)


def load_finetuned_network(path: str | Path, device: str = "cpu") -> Any:
    """`train.finetune.load_finetuned`: the fine-tuned `DownstreamNet`, eval mode."""
    from csvr.train.finetune import load_finetuned

    return load_finetuned(path, device)
