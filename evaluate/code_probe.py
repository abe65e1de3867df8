"""How much of a clip the video generators can get from a frozen code: the reconstruction ceiling of f_s.

The video branch reconstructs a clip from a 64-512-d code (f_i = AdaIN(f_s, f_d)). Its PSNR is bounded by
what that code holds, whatever the generator and its training. This probe measures the bound: it freezes a
pretraining checkpoint's V-Network, computes per clip

- `head`: f_s = g^V(pool(V-Network(clip))), the code the generators are conditioned on;
- `pooled`: pool(V-Network(clip)), the backbone feature before the head;
- `oracle`: the target clip's own mean colours on a (frames x 4 x 4) grid (what a perfect colour code would
  give; an upper reference for any global code at this resolution),

then trains, for each, a fresh `VideoGenerator` (the checkpoint's sizes) plus a linear map to its
conditioning size with L2 only (Adam, no critic, so nothing but the code limits it) on train-split clips
(the training augmentation, clean targets) and scores PSNR on the test split's centre-cropped clips, next
to the training mean frame. A `head` close to the mean frame while `oracle` is far above says the code,
not the generator, is what the branch lacks (docs/models.md, "Video branch").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

CODES = ("head", "pooled", "oracle")


@dataclass(frozen=True)
class ProbeConfig:
    passes: int = 4          # random clips per train video
    steps: int = 300         # Adam steps per code
    lr: float = 1e-3
    batch: int = 16
    seed: int = 0


def _batches(ds: Any, augment: torch.nn.Module, keys: list, batch: int):
    from csvr.train.data import collate_samples

    for i in range(0, len(keys), batch):
        b = collate_samples([ds[k] for k in keys[i:i + batch]])
        yield augment({k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in b.items()})


@torch.no_grad()
def _codes(net: Any, ds: Any, augment: torch.nn.Module, keys: list, batch: int, size: int):
    from csvr.train.steps import video_target

    codes: dict[str, list[torch.Tensor]] = {k: [] for k in CODES}
    targets = []
    for b in _batches(ds, augment, keys, batch):
        pooled = net.vnet.forward_pooled(b["clip"])
        target = video_target(b.get("clip_target", b["clip"]), size)
        codes["pooled"].append(pooled)
        codes["head"].append(net.head_v(pooled))
        codes["oracle"].append(torch.nn.functional.adaptive_avg_pool3d(target, (target.shape[2], 4, 4)).flatten(1))
        targets.append(target)
    return {k: torch.cat(v) for k, v in codes.items()}, torch.cat(targets)


def fresh_copy(module: torch.nn.Module) -> torch.nn.Module:
    """The same architecture with freshly initialised weights (under the current torch seed)."""
    import copy

    new = copy.deepcopy(module)
    for m in new.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return new.train()


def _psnr(fake: torch.Tensor, real: torch.Tensor) -> float:
    from csvr.evaluate import metrics as M

    def frames(x: torch.Tensor) -> np.ndarray:  # [-1, 1] (B, 3, T, H, W) -> [0, 1] (B, T, H, W, 3)
        return ((x + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1).numpy()

    acc = M.FrameQualityAccumulator()
    acc.add(frames(fake), frames(real))
    return acc.psnr()


def run_probe(checkpoint: str | Path, store: str | Path, cfg: ProbeConfig = ProbeConfig()) -> dict[str, Any]:
    """Train one generator per code on the train split, score each on the test split (see module docstring)."""
    from csvr.train import checkpoint as ckpt_mod
    from csvr.train.data import ClipDataset, ClipSpec, EvalClipDataset
    from csvr.train.data import make_augment
    from csvr.train.pretrain import load_pretrained_model

    t0 = time.perf_counter()
    net = load_pretrained_model(checkpoint)
    run_cfg = ckpt_mod.load(checkpoint)["config"]
    d = run_cfg["data"]
    spec = ClipSpec(frames=int(d["frames"]), stride=int(d["stride"]), future_frames=0, max_iframes=0, crop=int(d["crop"]))
    size = int(net.cfg.video_size)
    train_ds = ClipDataset(store, split="train", spec=spec)
    test_ds = EvalClipDataset(store, split="test", spec=spec, num_clips=1)
    kw = dict(input_size=d.get("input_size"), pose_norm=d.get("pose_norm", "crop"))
    train_aug = make_augment(list(d["augment"]), int(d["crop"]), True, video_targets=True, **kw)
    test_aug = make_augment(list(d["augment"]), int(d["crop"]), False, **kw)
    keys = [(i, 1000 * p + i + cfg.seed) for p in range(cfg.passes) for i in range(len(train_ds))]
    train_codes, train_target = _codes(net, train_ds, train_aug, keys, cfg.batch, size)
    test_codes, test_target = _codes(net, test_ds, test_aug, list(range(len(test_ds))), cfg.batch, size)
    mean = train_target.mean(0, keepdim=True)
    out: dict[str, Any] = {"checkpoint": str(checkpoint), "train_clips": len(train_target),
                           "test_clips": len(test_target), "config": cfg.__dict__, "size": size,
                           "mean_frame_psnr": _psnr(mean.expand_as(test_target), test_target), "codes": {}}
    for name in CODES:
        x_tr, x_te = train_codes[name], test_codes[name]
        mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
        torch.manual_seed(cfg.seed)
        proj = torch.nn.Linear(x_tr.shape[1], net.video_gen_r.cond_dim)
        gen = fresh_copy(net.video_gen_r)
        opt = torch.optim.Adam([*gen.parameters(), *proj.parameters()], cfg.lr)
        g = torch.Generator().manual_seed(cfg.seed)
        for _ in range(cfg.steps):
            idx = torch.randint(0, len(x_tr), (cfg.batch,), generator=g)
            loss = (gen(proj((x_tr[idx] - mu) / sd)) - train_target[idx]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        gen.eval()
        with torch.no_grad():
            test_psnr = _psnr(gen(proj((x_te - mu) / sd)), test_target)
            n = min(len(x_tr), 64)
            train_psnr = _psnr(gen(proj((x_tr[:n] - mu) / sd)), train_target[:n])
        out["codes"][name] = {"dim": int(x_tr.shape[1]), "test_psnr": test_psnr, "train_psnr": train_psnr}
    out["seconds"] = time.perf_counter() - t0
    return out


def probe_markdown(result: dict[str, Any]) -> str:
    lines = [f"Code probe of `{result['checkpoint']}` ({result['train_clips']} train / {result['test_clips']} test "
             f"clips at {result['size']} px, {result['config']['steps']} Adam steps per code)", "",
             "| code | dim | test PSNR (dB) | train PSNR (dB) |", "|---|---|---|---|",
             f"| training mean frame | | {result['mean_frame_psnr']:.2f} | |"]
    for name, r in result["codes"].items():
        lines.append(f"| {name} | {r['dim']} | {r['test_psnr']:.2f} | {r['train_psnr']:.2f} |")
    return "\n".join(lines) + "\n"
