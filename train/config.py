"""Training configuration: dataclasses loaded from YAML, validated up front, saved into every run folder.

A config file is plain YAML whose keys mirror the dataclasses below. Unknown keys, wrong types and
out-of-range values are refused before any model is built, with the file and the dotted key in the
message. `--set a.b=value` overrides are applied to the raw mapping (value parsed as YAML) before
validation, so they get the same checks. The saved `config.yaml` in a run folder carries the code
version, so a run can be reproduced from its folder alone.
"""

from __future__ import annotations

import dataclasses
import subprocess
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from csvr.contracts import atomic_write_text

STAGES = ("pose", "video", "context", "joint")
VARIANTS = ("fi", "fs", "fd", "concat", "scratch", "scratch_fs")
AUGMENTATIONS = ("random_crop", "flip", "gaussian_blur", "color_jitter")


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the source and the key."""


# --------------------------------------------------------------------------------------------- sections
@dataclass
class DataConfig:
    """Clip recipe and loader settings (paper IV-B: 16 frames, stride 4, 112x112 crops)."""

    frames: int = 16
    stride: int = 4
    future_frames: int = 16
    max_iframes: int = 4
    crop: int = 112
    input_size: int | None = None         # resize each crop to this size before the network (None: keep crop)
    pose_norm: str = "person"             # poses as the networks see them: "person" (centred, unit RMS
                                          # radius per clip) or "crop" (the crop's [0, 1] box); docs/training.md
    split_index: int = 1
    num_workers: int | None = None        # loader workers per process; None = from the cores available to it
    pin_memory: bool = True
    augment: list[str] = field(default_factory=lambda: list(AUGMENTATIONS))
    allow_incomplete: bool = False
    verify_checksums: bool = False        # hash every shard against its recorded sha256 when the store is
                                          # opened (docs/store.md: cost); sizes and the table are always checked

    def validate(self, where: str) -> None:
        _positive(where, frames=self.frames, stride=self.stride, crop=self.crop)
        if self.input_size is not None:
            _positive(where, input_size=self.input_size)
        if self.pose_norm not in ("crop", "person"):
            raise ConfigError(f"{where}.pose_norm: must be 'crop' or 'person', got {self.pose_norm!r}")
        if self.future_frames < 0 or self.max_iframes < 0:
            raise ConfigError(f"{where}: future_frames and max_iframes must be >= 0")
        if self.split_index not in (1, 2, 3):
            raise ConfigError(f"{where}.split_index: must be 1, 2 or 3, got {self.split_index}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError(f"{where}.num_workers: must be >= 0, got {self.num_workers}")
        bad = [a for a in self.augment if a not in AUGMENTATIONS]
        if bad:
            raise ConfigError(f"{where}.augment: unknown augmentation(s) {bad}; known: {list(AUGMENTATIONS)}")


@dataclass
class ModelConfig:
    """Which networks make up the CSVR model and their sizes (paper III, IV-B)."""

    backbone: str = "r2plus1d_18"          # V-Network
    inet: str = "r2d_10"                   # I-Network
    embed_dim: int = 128                   # C: size of f_s, f_d and the contrastive space
    temperature: float = 0.07              # tau of Eq. 2
    context_loss: Literal["mi_infonce", "infonce", "l2"] = "mi_infonce"
    integration: Literal["adain", "concat"] = "adain"
    pose_layers: int = 6                   # G_p encoder depth (Table III)
    noise_dim: int = 64                    # z_p / z_v size
    video_size: int = 64                   # generated video side (TGAN output), e.g. 32 on CPU, 112 on GPU
    width: float = 1.0                     # channel-width multiplier of every network (backbones, GANs)
    options: dict[str, Any] = field(default_factory=dict)  # passed through to the model builders

    def validate(self, where: str) -> None:
        _positive(where, embed_dim=self.embed_dim, temperature=self.temperature, pose_layers=self.pose_layers,
                  noise_dim=self.noise_dim, video_size=self.video_size, width=self.width)
        if self.video_size % 8:
            raise ConfigError(f"{where}.video_size: must be a multiple of 8, got {self.video_size}")


@dataclass
class OptimConfig:
    """SGD per the paper; the learning rate scales with the (global) batch: lr = lr_per_sample * batch."""

    name: Literal["sgd", "adam"] = "sgd"
    lr_per_sample: float = 0.0005
    momentum: float = 0.9
    weight_decay: float = 0.005
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = 0
    warmup_epochs: float = 0.0             # used when warmup_steps is 0: warmup length in epochs of the split
    min_lr_frac: float = 0.0
    grad_clip: float | None = None         # max grad norm of each module group (pretraining) or of the whole
                                           # network (fine-tuning); None = no clipping (norms are still logged)
    disc_lr_mult: float = 1.0              # discriminator lr relative to the generators

    def validate(self, where: str) -> None:
        _positive(where, lr_per_sample=self.lr_per_sample, disc_lr_mult=self.disc_lr_mult)
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"{where}.momentum: must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0 or self.warmup_steps < 0 or self.warmup_epochs < 0 or not 0 <= self.min_lr_frac <= 1:
            raise ConfigError(f"{where}: weight_decay, warmup_steps and warmup_epochs must be >= 0, min_lr_frac in [0, 1]")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"{where}.grad_clip: must be > 0 or null, got {self.grad_clip}")


@dataclass
class LossConfig:
    """Weights of Eq. 9 and the GAN terms."""

    sigma_p: float = 0.75
    sigma_c: float = 0.75
    gp_weight: float = 10.0                # WGAN-GP weight in Eq. 1
    pose_l2_weight: float = 1.0
    video_l2_weight: float = 1.0
    adv_weight: float = 1.0
    drift_weight: float = 0.001            # epsilon-drift E[D(real)^2] on every critic (ProGAN; keeps WGAN scores bounded)
    video_targets: list[str] = field(default_factory=lambda: ["reconstruct", "predict"])  # Table V

    def validate(self, where: str) -> None:
        for name in ("sigma_p", "sigma_c", "gp_weight", "pose_l2_weight", "video_l2_weight", "adv_weight", "drift_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name}: must be >= 0, got {getattr(self, name)}")
        bad = [t for t in self.video_targets if t not in ("reconstruct", "predict")]
        if bad or not self.video_targets:
            raise ConfigError(f"{where}.video_targets: non-empty subset of ['reconstruct', 'predict'], "
                              f"got {self.video_targets}")


@dataclass
class StageConfig:
    """One pretraining stage: which branch, how long, where its weights start from."""

    name: Literal["pose", "video", "context", "joint"]
    enabled: bool = True
    epochs: float | None = None            # passes over the train split; the trainer turns them into steps
                                           # for the global batch it runs with (train.plan)
    steps: int | None = None               # optimizer steps; when given, wins over `epochs`
    init_from: list[str] = field(default_factory=list)   # earlier stages whose checkpoints seed this one
    condition: Literal["features", "noise"] = "features"  # video stage only: what drives the generators.
                                           # features: f_i from the frozen encoders (L2 + critic); noise: f_i
                                           # replaced by Gaussian noise and no L2, i.e. TGAN-v2's unconditional
                                           # video GAN (the paper's IV-B reading, docs/training.md)

    def validate(self, where: str) -> None:
        if self.steps is None and self.epochs is None:
            raise ConfigError(f"{where}: give the stage's length as epochs or steps")
        if self.steps is not None:
            _positive(where, steps=self.steps)
        if self.epochs is not None:
            _positive(where, epochs=self.epochs)
        bad = [s for s in self.init_from if s not in STAGES]
        if bad:
            raise ConfigError(f"{where}.init_from: unknown stage(s) {bad}; known: {list(STAGES)}")
        if self.name in self.init_from:
            raise ConfigError(f"{where}.init_from: a stage cannot start from itself ({self.name})")
        if self.condition == "noise" and self.name != "video":
            raise ConfigError(f"{where}.condition: 'noise' applies to the video stage only, not {self.name!r}")


@dataclass
class RunConfig:
    """Everything about how a run executes, shared by pretraining and fine-tuning."""

    seed: int = 0
    deterministic: bool = False            # torch.use_deterministic_algorithms + seeded loader order
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "bf16", "none"] = "auto"   # auto = bf16 autocast on CUDA, none on CPU
    log_every: int = 1
    image_every: int = 100                 # save generated poses / frames as PNG every N steps (0 = never)
    checkpoint_every: int = 200            # steps (pretrain) between checkpoints; the end always saves
    threads: int = 0                       # torch threads per process; 0 = the cores available to this process
                                           # divided by the processes on this machine (train.loop.setup_runtime)
    tensorboard: bool = True

    def validate(self, where: str) -> None:
        if self.log_every < 1 or self.checkpoint_every < 1 or self.image_every < 0 or self.threads < 0:
            raise ConfigError(f"{where}: log_every and checkpoint_every must be >= 1, image_every and "
                              "threads >= 0")


@dataclass
class PretrainConfig:
    """Self-supervised pretraining (paper IV-B): staged branches, then joint with Eq. 9."""

    batch_size: int = 16                   # per process; the global batch is batch_size x world size
    global_batch_size: int | None = None   # when set: the global batch, split evenly over the processes
                                           # (overrides batch_size; the paper's literal B = 16 is 16)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    run: RunConfig = field(default_factory=RunConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [
        StageConfig("pose", epochs=20), StageConfig("context", epochs=20),
        StageConfig("video", epochs=20, init_from=["pose", "context"]),
        StageConfig("joint", epochs=200, init_from=["pose", "context", "video"])])

    def validate(self, where: str) -> None:
        _positive(where, batch_size=self.batch_size)
        if self.global_batch_size is not None:
            _positive(where, global_batch_size=self.global_batch_size)
        for name in ("data", "model", "optim", "loss", "run"):
            getattr(self, name).validate(f"{where}.{name}")
        if not self.stages:
            raise ConfigError(f"{where}.stages: at least one stage is needed")
        seen: list[str] = []
        for i, stage in enumerate(self.stages):
            stage.validate(f"{where}.stages[{i}]")
            if stage.name in seen:
                raise ConfigError(f"{where}.stages[{i}].name: stage {stage.name!r} appears twice")
            late = [s for s in stage.init_from if s not in seen]
            if late:
                raise ConfigError(f"{where}.stages[{i}].init_from: {late} must come before {stage.name!r}")
            seen.append(stage.name)
        if self.data.future_frames < 1 or self.data.max_iframes < 1:
            raise ConfigError(f"{where}.data: pretraining needs future_frames >= 1 and max_iframes >= 1")
        size = self.data.input_size or self.data.crop
        if self.model.video_size > size:
            raise ConfigError(f"{where}.model.video_size: {self.model.video_size} exceeds the network input size {size}")
        if "context" in [s.name for s in self.stages if s.enabled] and self.batch_size < 2:
            raise ConfigError(f"{where}.batch_size: contrastive stages need >= 2 clips per batch")


@dataclass
class FinetuneConfig:
    """Supervised fine-tuning for action recognition (paper IV-B)."""

    batch_size: int = 32                   # per process
    global_batch_size: int | None = None   # when set: the global batch, split evenly over the processes
    epochs: int = 100
    steps_per_epoch: int = 0               # 0 = one pass over the train split
    eval_clips_per_video: int = 1          # clip-level top-1 over this many uniform clips per test video
    max_eval_videos: int = 0               # 0 = the whole test split
    variant: Literal["fi", "fs", "fd", "concat", "scratch", "scratch_fs"] = "fi"
    dropout: float = 0.3
    allow_random: list[str] = field(default_factory=list)  # module groups that may start random (Table I)
    data: DataConfig = field(default_factory=lambda: DataConfig(future_frames=0, max_iframes=0))
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr_per_sample=0.0001, weight_decay=0.003))
    run: RunConfig = field(default_factory=lambda: RunConfig(checkpoint_every=1))

    def validate(self, where: str) -> None:
        _positive(where, batch_size=self.batch_size, epochs=self.epochs,
                  eval_clips_per_video=self.eval_clips_per_video)
        if self.global_batch_size is not None:
            _positive(where, global_batch_size=self.global_batch_size)
        if self.steps_per_epoch < 0 or self.max_eval_videos < 0:
            raise ConfigError(f"{where}: steps_per_epoch and max_eval_videos must be >= 0")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{where}.dropout: must be in [0, 1), got {self.dropout}")
        for name in ("data", "model", "optim", "run"):
            getattr(self, name).validate(f"{where}.{name}")


# ------------------------------------------------------------------------------------------- loading
def _positive(where: str, **values: float) -> None:
    for key, value in values.items():
        if value <= 0:
            raise ConfigError(f"{where}.{key}: must be > 0, got {value}")


def _check_type(where: str, tp: Any, value: Any) -> Any:
    """Convert `value` to type `tp` (dataclasses recursively) or raise ConfigError naming `where`."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(where, arg, value)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: must be one of {list(choices)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item,) = typing.get_args(tp)
        return [_check_type(f"{where}[{i}]", item, v) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def _from_dict(cls: type, data: Any, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _check_type(f"{where}.{name}", hints[name], data[name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {name!r}")
    return cls(**kwargs)


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to a nested mapping, in place; returns it.

    List items are addressed by index (`stages.0.steps=10`) or, for stages, by name (`stages.pose.steps=10`).
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from None
        parts = key.strip().split(".")
        node: Any = raw
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                index = _list_index(node, part, item)
                if last:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[:depth])} is not a mapping or list")
    return raw


def _list_index(node: list, part: str, item: str) -> int:
    if part.lstrip("-").isdigit():
        index = int(part)
        if not -len(node) <= index < len(node):
            raise ConfigError(f"--set {item!r}: index {index} out of range (list has {len(node)} items)")
        return index
    names = [x.get("name") if isinstance(x, dict) else None for x in node]
    if part in names:
        return names.index(part)
    raise ConfigError(f"--set {item!r}: no list item named {part!r} (have {names})")


def to_dict(cfg: Any) -> dict:
    """A plain dict (only str/int/float/bool/None/list/dict) of a config dataclass."""
    return dataclasses.asdict(cfg)


def _default_raw(cls: type) -> dict:
    return to_dict(cls())


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                raw: dict | None = None):
    """Load, override and validate a config of dataclass `cls` from YAML `path` (or mapping `raw`).

    Keys absent from the file keep their defaults; `stages`, when given, replaces the whole list.
    """
    source = str(path) if path is not None else "<config>"
    if raw is None:
        if path is None:
            raw = {}
        else:
            p = Path(path)
            if not p.is_file():
                raise ConfigError(f"{p}: config file not found")
            try:
                raw = yaml.safe_load(p.read_text()) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{p}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(raw).__name__}")
    raw = _deep_merge(_default_raw(cls), _strip_meta(raw))
    raw = apply_overrides(raw, list(overrides))
    try:
        cfg = _from_dict(cls, raw, "config")
        cfg.validate("config")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return cfg


def _strip_meta(raw: dict) -> dict:
    """Drop the provenance block a saved config carries, so a run folder's config.yaml loads again."""
    return {k: v for k, v in raw.items() if k != "meta"}


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "options":
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def code_version() -> dict:
    """The code version: `git describe --always --dirty` and commit when in a git tree, else the package."""
    repo = Path(__file__).resolve().parents[1]
    info: dict[str, Any] = {}
    try:
        from importlib.metadata import version

        info["package"] = version("csvr")
    except Exception:  # noqa: BLE001  (not installed: the git fields below still identify the code)
        info["package"] = None
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                                  check=True, timeout=10).stdout.strip()

        info["commit"] = git("rev-parse", "HEAD")
        info["describe"] = git("describe", "--always", "--dirty", "--tags")
        info["dirty"] = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def save_config(cfg: Any, run_dir: str | Path, extra: dict | None = None) -> Path:
    """Write `run_dir/config.yaml`: the validated config plus a `meta` block (code version, extras)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = to_dict(cfg)
    data["meta"] = {"code_version": code_version(), "kind": type(cfg).__name__, **(extra or {})}
    path = run_dir / "config.yaml"
    return atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
