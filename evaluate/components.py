"""The real evaluation components: `EvalComponents` built from run folders (checkpoints) and a store.

Store side (read with zarr per docs/contracts.md section 4): class names, video ids, one display frame
per video, class groups. Loader side: eval batches over `train.data.EvalClipDataset` with the clip
recipe and crop the checkpoints were trained with. Model side: `load_model_callables` turns a
pretraining run and a fine-tuning run into the callables `classify`, `features` and `pretext`
(`train.pretrain.load_pretrained_model`, `train.finetune.load_finetuned`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class StoreInfo:
    """The little evaluation needs from a `csvr-store/1` store, read with zarr directly."""

    def __init__(self, path: str | Path, allow_incomplete: bool = False) -> None:
        from csvr.contracts import open_store

        self.path = str(path)
        self.root = open_store(self.path, allow_incomplete=allow_incomplete)  # StoreError is a ValueError
        attrs = dict(self.root.attrs)
        self.attrs = attrs
        self.classes: list[str] = [str(c) for c in attrs.get("classes", [])]
        self.ids: list[str] = [str(v) for v in self.root["videos/id"][...]]
        self._frame_start = np.asarray(self.root["videos/frame_start"][...], dtype=np.int64)
        self._num_frames = np.asarray(self.root["videos/num_frames"][...], dtype=np.int64)

    def middle_frame(self, split: str, video_index: int) -> np.ndarray:
        """One (H, W, 3) uint8 frame (the middle one) of video-table row `video_index`; `split` unused
        (rows index the whole table), kept for the `EvalComponents.video_frame` signature."""
        n = int(self._num_frames[video_index])
        if n <= 0:
            raise ValueError(f"{self.path}: video {self.ids[video_index]} has no stored frames")
        return np.asarray(self.root["frames"][int(self._frame_start[video_index]) + n // 2])

    def class_groups(self, groups_file: str | Path | None = None) -> dict[str, str] | None:
        """Class -> motion|context|both from `groups_file`, else from `synthetic.json` in a dataset root
        recorded in the store attrs (`source_root`, `root` or `options.root`); None when unknown (UCF101)."""
        from csvr.evaluate.plots import load_class_groups

        if groups_file is not None:
            return load_class_groups(groups_file)
        candidates = [self.attrs.get("source_root"), self.attrs.get("root"), (self.attrs.get("options") or {}).get("root")]
        for root in candidates:
            if root and (Path(root) / "synthetic.json").is_file():
                return load_class_groups(Path(root) / "synthetic.json")
        return None


def resolve_device(device: str | None = "auto") -> str:
    """`auto` (or None) -> `cuda` when CUDA is available, else `cpu`; any other name is kept
    (`cuda` without CUDA is an error, as in training: `train.distributed.resolve_device`)."""
    if device in (None, "auto", "cuda"):
        from csvr.train.distributed import resolve_device as _resolve

        return str(_resolve(device or "auto"))
    return str(device)


def loader_workers(num_workers: int | None = None) -> int:
    """Loader worker processes for evaluation: `num_workers` when given, else
    `train.distributed.default_loader_workers(None)` (the cores this process may use, at most 8)."""
    from csvr.train.distributed import default_loader_workers

    return default_loader_workers(num_workers)


def eval_threads(threads: int | None = None) -> int:
    """Torch threads for evaluation: `threads` when > 0, else the cores this process may use
    (`train.distributed.cores_per_process()`)."""
    from csvr.train.distributed import cores_per_process

    return int(threads) if threads else cores_per_process()


def eval_batches(
    store: str | Path,
    split: str,
    *,
    num_clips: int = 10,
    batch_size: int = 16,
    device: str = "auto",
    split_index: int = 1,
    num_workers: int | None = None,
    spec: Any | None = None,
    crop: int = 112,
    input_size: int | None = None,
    pose_norm: str = "crop",
) -> Callable[[], Iterable[Mapping[str, Any]]]:
    """A factory of eval batches: `num_clips` clips per video of `split` (starts spread uniformly),
    centre-cropped to `crop`, resized to `input_size` when given (as the trainer's `data.input_size`),
    poses expressed as `pose_norm` says (the trainer's `data.pose_norm`), and normalised: the
    trainer's own eval augmentation (`train.data.make_augment`, i.e.
    `ClipAugment(train=False)`, docs/contracts.md section 7).

    Every call of the factory streams the split from the store again (nothing is cached: a UCF101
    test split at 10 clips per video would be ~90 GB); `num_workers=None` takes
    `loader_workers()`, `device="auto"` CUDA when available."""
    from csvr.train.data import EvalClipDataset, make_augment, make_loader

    device = resolve_device(device)
    workers = loader_workers(num_workers)
    ds = EvalClipDataset(store, split=split, split_index=split_index, num_clips=num_clips,
                         **({"spec": spec} if spec is not None else {}))
    augment = make_augment([], crop, train=False, input_size=input_size, pose_norm=pose_norm).to(device)

    def batches() -> Iterable[Mapping[str, Any]]:
        from tqdm import tqdm  # on stderr; TQDM_DISABLE (csvr -q) hides it

        loader = make_loader(ds, batch_size, workers=workers, pin_memory=device.startswith("cuda"))
        for batch in tqdm(loader, desc=f"eval/{split}", unit="batch", leave=False, dynamic_ncols=True):
            batch = {k: (v.to(device, non_blocking=True) if hasattr(v, "to") else v) for k, v in batch.items()}
            out = augment(batch)
            del batch
            yield out

    return batches


# --------------------------------------------------------------------------------------------------
# Clip recipes from the checkpoints
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """The clip recipe a model was trained with (from its checkpoint's `config.data`)."""

    frames: int
    stride: int
    crop: int
    future_frames: int = 0
    max_iframes: int = 0
    split_index: int = 1
    input_size: int | None = None  # the crop is resized to this before the network (None: kept)
    pose_norm: str = "crop"        # the trainer's data.pose_norm ("crop" for runs that predate it)

    @property
    def size(self) -> int:
        """The side of the network's input."""
        return self.input_size or self.crop

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "Recipe":
        from csvr.evaluate.checkpoints import checkpoint_data_config

        d = checkpoint_data_config(path)
        try:
            return cls(frames=int(d["frames"]), stride=int(d["stride"]), crop=int(d["crop"]),
                       future_frames=int(d.get("future_frames", 0)), max_iframes=int(d.get("max_iframes", 0)),
                       split_index=int(d.get("split_index", 1)),
                       input_size=int(d["input_size"]) if d.get("input_size") else None,
                       pose_norm=str(d.get("pose_norm", "crop")))
        except KeyError as e:
            raise ValueError(f"{path}: config.data lacks {e.args[0]!r}") from None

    def spec(self, pretext: bool = False) -> Any:
        """A `train.data.ClipSpec`: current clip only, or with future clip and I-frames (`pretext`)."""
        from csvr.train.data import ClipSpec

        return ClipSpec(frames=self.frames, stride=self.stride,
                        future_frames=self.future_frames if pretext else 0,
                        max_iframes=self.max_iframes if pretext else 0)


# --------------------------------------------------------------------------------------------------
# Model callables from checkpoints
# --------------------------------------------------------------------------------------------------

CONTEXT_GROUPS = frozenset({"vnet", "inet", "head_v", "head_i"})
VIDEO_GROUPS = frozenset({"vnet", "head_v", "pose_gen", "motion_align", "integration"})


def _frames01(x: Any) -> Any:
    """Generator space (B, 3, T, H, W) in [-1, 1] -> (B, T, H, W, 3) in [0, 1]."""
    return ((x.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1).contiguous()


def _classifier_input(x: Any, crop: int) -> Any:
    """Generator space (B, 3, T, s, s) in [-1, 1] -> the classifier's input: resized to crop x crop and
    normalised like `ClipAugment` (Kinetics mean/std)."""
    import torch
    import torch.nn.functional as F

    from csvr.train.data import KINETICS_MEAN, KINETICS_STD

    b, c, t, h, w = x.shape
    x01 = ((x.float() + 1) / 2).clamp(0, 1)
    if (h, w) != (crop, crop):
        x01 = F.interpolate(x01.transpose(1, 2).reshape(b * t, c, h, w), size=(crop, crop), mode="bilinear",
                            align_corners=False).reshape(b, t, c, crop, crop).transpose(1, 2)
    mean = torch.tensor(KINETICS_MEAN, device=x.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD, device=x.device).view(1, 3, 1, 1, 1)
    return (x01 - mean) / std


def pretext_callable(net: Any, groups: Iterable[str], *, video_targets: Iterable[str] = ("reconstruct", "predict"),
                     classifier: Callable[[Any, Any], Any] | None = None, classifier_crop: int | None = None,
                     seed: int = 0) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """batch -> the `evaluate.pipeline.PRETEXT_KEYS` outputs of a pretrained `CSVRModel` for the branches
    whose module groups hold trained weights (`groups`):

    - context (V/I-Networks + heads): g^V of each clip, g^I of each valid I-frame and its owner clip;
    - pose (G_p): generated vs real future poses, observed-joint mask, the observed poses;
    - video (generators, needs f_s and f_d too): real vs reconstructed / predicted frames in [0, 1];
      with a `classifier(clip, pose)` (the fine-tuned network), its logits of the generated clips and
      of the real clips degraded the same way (down to the generator's size and back up to the
      classifier's crop), for the Inception Score and its ceiling.
    Generator noise is drawn from a generator seeded with `seed` + batch number: runs repeat exactly.
    """
    import torch

    from csvr.train.steps import video_target

    groups = set(groups)
    targets = set(video_targets)
    calls = {"n": 0}

    def pretext(batch: Mapping[str, Any]) -> dict[str, Any]:
        g = torch.Generator().manual_seed(seed + calls["n"])
        calls["n"] += 1
        clip = batch["clip"]
        dev = clip.device
        b = clip.shape[0]
        out: dict[str, Any] = {}
        f_s = feats = None
        if CONTEXT_GROUPS <= groups and "iframes" in batch and "iframe_mask" in batch:
            f_s = net.video_embedding(clip)
            mask = batch["iframe_mask"].bool()
            z = net.iframe_embeddings(batch["iframes"], mask)
            out["video_emb"] = f_s
            out["iframe_emb"] = z[mask]
            out["iframe_owner"] = torch.arange(b, device=dev)[:, None].expand_as(mask)[mask]
        if "pose_gen" in groups and "future_pose" in batch:
            zp = torch.randn(b, net.pose_gen.noise_dim, generator=g).to(dev)
            gen, feats = net.pose_gen(batch["pose"][..., :2], zp)
            out.update(pose_pred=gen, pose_target=batch["future_pose"][..., :2],
                       pose_mask=batch["future_pose_mask"].bool(), pose_observed=batch["pose"][..., :2])
        video_ok = VIDEO_GROUPS <= groups and feats is not None
        if video_ok:
            if f_s is None:
                f_s = net.video_embedding(clip)
            f_i = net.integrate(f_s.float(), net.motion_feature(feats).float())
            size = net.cfg.video_size
            if "reconstruct" in targets and "video_gen_r" in groups:
                rec = net.video_gen_r(f_i, torch.randn(b, net.video_gen_r.noise_dim, generator=g).to(dev))
                real = video_target(clip, size)
                out["real"], out["reconstructed"] = _frames01(real), _frames01(rec)
                if classifier is not None and classifier_crop:
                    pose = batch["pose"][..., :2]
                    out["generated_logits"] = classifier(_classifier_input(rec, classifier_crop), pose)
                    out["real_logits"] = classifier(_classifier_input(real, classifier_crop), pose)
            if "predict" in targets and "video_gen_p" in groups and "future_clip" in batch:
                pred = net.video_gen_p(f_i, torch.randn(b, net.video_gen_p.noise_dim, generator=g).to(dev))
                out["future_real"] = _frames01(video_target(batch["future_clip"], size))
                out["future_generated"] = _frames01(pred)
        return out

    return pretext


@dataclass
class LoadedModels:
    """What `load_models` built: the callables plus the clip recipes and checkpoint paths."""

    callables: dict[str, Callable[..., Any] | None]
    pretrain_checkpoint: Path | None = None
    finetune_checkpoint: Path | None = None
    pretrain_recipe: Recipe | None = None
    finetune_recipe: Recipe | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def recipe(self) -> Recipe:
        """The recipe of the recognition / retrieval pass: the fine-tuned model's when there is one
        (the classifier must see what it was trained on), else the pretrained model's."""
        r = self.finetune_recipe or self.pretrain_recipe
        if r is None:
            raise ValueError("no model loaded")
        return r


def load_models(pretrain_run: str | Path | None, finetune_run: str | Path | None, device: str = "auto",
                seed: int = 0) -> LoadedModels:
    """Rebuild the networks of the runs (folders or .pt files) and wrap them as evaluation callables.

    classify: the fine-tuned `DownstreamNet` (`checkpoints/last.pt`, the last epoch),
    `net(batch["clip"], batch["pose"][..., :2])`; features: the pretrained V-Network's pooled
    features (`checkpoints/final.pt`, no fine-tuning); pretext: see `pretext_callable`.
    """
    from csvr.evaluate.checkpoints import (finetune_checkpoint, load_checkpoint, load_finetuned_network,
                                      load_pretrained_network, pretrain_checkpoint)

    device = resolve_device(device)
    fns: dict[str, Callable[..., Any] | None] = {"classify": None, "features": None, "pretext": None}
    res = LoadedModels(fns)
    classifier = None
    if finetune_run is not None:
        path = finetune_checkpoint(finetune_run)
        classifier = load_finetuned_network(path, device)
        res.finetune_checkpoint, res.finetune_recipe = path, Recipe.from_checkpoint(path)
        ck = load_checkpoint(path)
        res.info.update(finetune_variant=ck.get("variant"), finetune_epochs=ck.get("progress", {}).get("epoch"),
                        backbone=(ck.get("model_config") or {}).get("backbone"))
        fns["classify"] = lambda b: classifier(b["clip"], b["pose"][..., :2])
    if pretrain_run is not None:
        path = pretrain_checkpoint(pretrain_run)
        ck = load_checkpoint(path)
        net = load_pretrained_network(path, device)
        groups = set(ck.get("valid_groups", ck.get("trained_groups", [])))
        res.pretrain_checkpoint, res.pretrain_recipe = path, Recipe.from_checkpoint(path)
        res.info.setdefault("backbone", (ck.get("model_config") or {}).get("backbone"))
        res.info["pretrained_groups"] = sorted(groups)
        if "vnet" in groups:
            fns["features"] = lambda b: net.vnet.forward_pooled(b["clip"])
        else:
            log.warning("%s: the V-Network was not pretrained (groups %s); no retrieval features", path, sorted(groups))
        same_frames = (res.finetune_recipe is None or res.finetune_recipe.frames == res.pretrain_recipe.frames)
        if classifier is not None and not same_frames:
            log.warning("fine-tuned on %d frames, pretrained on %d: no Inception Score",
                        res.finetune_recipe.frames, res.pretrain_recipe.frames)
        fns["pretext"] = pretext_callable(
            net, groups, video_targets=(ck.get("config") or {}).get("loss", {}).get("video_targets", ("reconstruct", "predict")),
            classifier=classifier if same_frames else None,
            classifier_crop=res.finetune_recipe.size if res.finetune_recipe else None, seed=seed)
    return res


def load_model_callables(
    pretrain_run: str | Path | None, finetune_run: str | Path | None, device: str = "auto"
) -> dict[str, Callable[..., Any] | None]:
    """{"classify": batch -> logits (B, C) from the fine-tuned model of `finetune_run`,
        "features": batch -> pooled pretrained V-Network features (B, D) from `pretrain_run`,
        "pretext": batch -> dict with `evaluate.pipeline.PRETEXT_KEYS` (pretrained model)};
    an entry is None when its run is not given. See `load_models` for the recipes as well."""
    return load_models(pretrain_run, finetune_run, device).callables
