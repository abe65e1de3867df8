"""Batched augmentation on the training device: crop, flip, colour jitter, blur, normalisation, poses.

Input: a collated batch of `ClipDataset` samples (uint8 frames at the stored size, channels last),
already moved to the device. Output: the same dict with
  clip (B,3,T,c,c), future_clip (B,3,T',c,c), iframes (B,K,3,c,c) float32, normalised;
  pose / future_pose (B,T,17,3) with x, y re-normalised to the crop (x' = (x*W - x0)/c) and mirrored on
  a flip (x' -> 1 - x', COCO left/right joints swapped, masks swapped with them); unobserved joints
  whose coordinates are exactly 0 stay 0;
  aug_crop (B,2) int64 (y0, x0) and aug_flip (B,) bool for debugging;
  with `video_targets=True` also clip_target / future_clip_target: the same crop and flip, normalised,
  without colour jitter or blur (the video generators' L2 targets).
A clip and its future clip share one crop, flip, jitter and blur (one continuous video); every I-frame
gets its own parameters (the paper's separate I-frame view). `train=False` gives the centre crop only.
Batches cropped in the worker (`ClipSpec(crop=c)`: frames already c x c, plus `crop_origin` and
`frame_size`) are not cropped again; poses are mapped with the worker's crop origin, and `aug_crop`
reports it. Flip, jitter, blur and normalisation are applied as usual.
Normalisation: (x/255 - mean) / std with the Kinetics mean/std used by torchvision's video models.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# COCO-17: 0 nose, 1/2 eyes, 3/4 ears, 5/6 shoulders, 7/8 elbows, 9/10 wrists, 11/12 hips, 13/14 knees,
# 15/16 ankles (odd = left, even = right). A horizontal flip swaps each left/right pair.
COCO_FLIP_PERM: tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
KINETICS_MEAN: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
KINETICS_STD: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)
# How poses reach the networks: "crop" = x, y in the crop's [0, 1] box; "person" = centred on the
# person and scaled to unit RMS radius per clip (`normalize_person_poses`).
POSE_NORMS: tuple[str, ...] = ("crop", "person")

# RGB <-> YIQ: hue rotation is a rotation of the (I, Q) chroma plane
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


def _crop_stack(x: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, c: int) -> torch.Tensor:
    """x (N, T, H, W, 3) -> (N, T, c, c, 3) with one (y0, x0) per item."""
    ys, xs = y0.tolist(), x0.tolist()
    return torch.stack([x[i, :, ys[i]:ys[i] + c, xs[i]:xs[i] + c] for i in range(x.shape[0])])


def _per_item(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.view(-1, *([1] * (ndim - 1)))


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma of (N, 3, ...) -> (N, 1, ...)."""
    w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, *([1] * (x.dim() - 2)))
    return (x * w).sum(1, keepdim=True)


def color_jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor,
                 hue: torch.Tensor) -> torch.Tensor:
    """Per-item jitter of x (N, 3, T, h, w) in [0, 1]; factors (N,), identity = 1, 1, 1, 0."""
    nd = x.dim()
    x = (x * _per_item(brightness, nd)).clamp_(0, 1)
    m = _gray(x).mean(dim=tuple(range(2, nd)), keepdim=True)
    x = ((x - m) * _per_item(contrast, nd) + m).clamp_(0, 1)
    g = _gray(x)
    x = ((x - g) * _per_item(saturation, nd) + g).clamp_(0, 1)
    if bool((hue != 0).any()):
        theta = hue * 2 * math.pi
        cos, sin = torch.cos(theta), torch.sin(theta)
        rot = torch.zeros(len(hue), 3, 3, device=x.device, dtype=x.dtype)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
        m = _YIQ2RGB.to(x) @ rot @ _RGB2YIQ.to(x)  # (N, 3, 3)
        x = torch.einsum("nij,nj...->ni...", m, x).clamp_(0, 1)
    return x


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur of x (N, 3, T, h, w) with one sigma per item (reflect padding)."""
    n, ch, t, h, w = x.shape
    r = kernel_size // 2
    pos = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(pos[None] ** 2) / (2 * sigma.to(x)[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)  # (N, ks)
    k = k.repeat_interleave(ch * t, 0)  # (N*3*T, ks)
    y = x.reshape(1, n * ch * t, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k[:, None, None, :], groups=n * ch * t)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k[:, None, :, None], groups=n * ch * t)
    return y.reshape(n, ch, t, h, w)


class ClipAugment(torch.nn.Module):
    """Batched, sample-consistent video augmentation (see module docstring)."""

    def __init__(self, crop: int = 112, train: bool = True, *, flip_p: float = 0.5, jitter_p: float = 0.8,
                 brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1,
                 blur_p: float = 0.5, blur_sigma: tuple[float, float] = (0.1, 2.0),
                 mean: tuple[float, float, float] = KINETICS_MEAN, std: tuple[float, float, float] = KINETICS_STD,
                 normalize: bool = True, video_targets: bool = False) -> None:
        super().__init__()
        self.video_targets = video_targets
        self.crop, self.train_mode = int(crop), train
        self.flip_p, self.jitter_p, self.blur_p = flip_p, jitter_p, blur_p
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.blur_sigma = blur_sigma
        self.blur_kernel = 2 * math.ceil(3 * blur_sigma[1]) + 1
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1, 1), persistent=False)

    # -- parameter draws (on CPU with an optional generator, so runs are reproducible) ------------
    def _params(self, n: int, h: int, w: int, g: torch.Generator | None) -> dict[str, torch.Tensor]:
        c = self.crop
        if h < c or w < c:
            raise ValueError(f"frames {h}x{w} are smaller than the crop {c}")
        if not self.train_mode:
            return {"y0": torch.full((n,), (h - c) // 2), "x0": torch.full((n,), (w - c) // 2),
                    "flip": torch.zeros(n, dtype=torch.bool)}

        def u(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(n, generator=g)

        p = {"y0": torch.randint(0, h - c + 1, (n,), generator=g), "x0": torch.randint(0, w - c + 1, (n,), generator=g),
             "flip": torch.rand(n, generator=g) < self.flip_p}
        jit = torch.rand(n, generator=g) < self.jitter_p
        one = torch.ones(n)
        p["brightness"] = torch.where(jit, u(1 - self.brightness, 1 + self.brightness), one)
        p["contrast"] = torch.where(jit, u(1 - self.contrast, 1 + self.contrast), one)
        p["saturation"] = torch.where(jit, u(1 - self.saturation, 1 + self.saturation), one)
        p["hue"] = torch.where(jit, u(-self.hue, self.hue), torch.zeros(n))
        p["blur"] = torch.rand(n, generator=g) < self.blur_p
        p["sigma"] = u(*self.blur_sigma)
        return p

    def _video(self, x: torch.Tensor, p: dict[str, torch.Tensor], geometric: list | None = None) -> torch.Tensor:
        """x (N, T, H, W, 3) uint8 -> (N, 3, T, c, c) float32 with the per-item params `p`; when `geometric`
        is a list, the clip after crop and flip only (normalised, no jitter or blur) is appended to it."""
        x = _crop_stack(x, p["y0"], p["x0"], self.crop)
        x = x.permute(0, 4, 1, 2, 3).float().div_(255.0)
        flip = p["flip"].to(x.device)
        if bool(flip.any()):
            x = torch.where(flip.view(-1, 1, 1, 1, 1), x.flip(-1), x)
        if geometric is not None:
            geometric.append((x - self.mean.to(x)) / self.std.to(x) if self.normalize else x.clone())
        if self.train_mode and x.numel():  # (0 frames: a pose-only batch)
            dev = x.device
            x = color_jitter(x, p["brightness"].to(dev), p["contrast"].to(dev), p["saturation"].to(dev),
                             p["hue"].to(dev))
            idx = torch.nonzero(p["blur"]).flatten()
            if len(idx):
                x[idx.to(dev)] = gaussian_blur(x[idx.to(dev)], p["sigma"][idx], self.blur_kernel)
        if self.normalize:
            x = (x - self.mean.to(x)) / self.std.to(x)
        return x

    def _pose(self, pose: torch.Tensor, mask: torch.Tensor, h: int | torch.Tensor, w: int | torch.Tensor,
              p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """h, w: the full frame size the pose is normalised to (scalars, or (B,) per item)."""
        c = float(self.crop)
        dev = pose.device
        y0 = p["y0"].to(dev, pose.dtype).view(-1, 1, 1)
        x0 = p["x0"].to(dev, pose.dtype).view(-1, 1, 1)
        h = torch.as_tensor(h, dtype=pose.dtype, device=dev).reshape(-1, 1, 1)
        w = torch.as_tensor(w, dtype=pose.dtype, device=dev).reshape(-1, 1, 1)
        missing = (pose[..., 0] == 0) & (pose[..., 1] == 0) & (pose[..., 2] == 0)
        out = pose.clone()
        out[..., 0] = (pose[..., 0] * w - x0) / c
        out[..., 1] = (pose[..., 1] * h - y0) / c
        flip = p["flip"].to(dev).view(-1, 1, 1)
        out[..., 0] = torch.where(flip, 1.0 - out[..., 0], out[..., 0])
        out = torch.where(missing[..., None], torch.zeros_like(out), out)
        perm = torch.tensor(COCO_FLIP_PERM, device=dev)
        fl = flip.view(-1, 1, 1, 1)
        out = torch.where(fl, out[:, :, perm], out)
        mask = torch.where(flip, mask[:, :, perm], mask)
        return out, mask

    @torch.no_grad()
    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Augment a collated batch (see module docstring); returns a new dict, the input is untouched."""
        out = dict(batch)
        clip, fut = batch["clip"], batch["future_clip"]
        b, t, h, w, _ = clip.shape
        p = self._params(b, h, w, generator)
        geometric = [] if self.video_targets else None
        video = self._video(torch.cat([clip, fut], dim=1), p, geometric)
        out["clip"], out["future_clip"] = video[:, :, :t], video[:, :, t:]
        if geometric:
            out["clip_target"], out["future_clip_target"] = geometric[0][:, :, :t], geometric[0][:, :, t:]
        pose_p, ph, pw = p, h, w
        if "crop_origin" in batch:  # cropped in the worker (ClipSpec.crop): frames are c x c already
            if (h, w) != (self.crop, self.crop):
                raise ValueError(f"batch has crop_origin (cropped in the worker) but frames are {h}x{w}, "
                                 f"not the augmentation crop {self.crop}x{self.crop}")
            origin = batch["crop_origin"].to("cpu", torch.int64)
            pose_p = {"y0": origin[:, 0], "x0": origin[:, 1], "flip": p["flip"]}
            ph, pw = batch["frame_size"][:, 0], batch["frame_size"][:, 1]
        for key in ("pose", "future_pose"):
            if key in batch:
                out[key], out[f"{key}_mask"] = self._pose(batch[key], batch[f"{key}_mask"], ph, pw, pose_p)
        out["aug_crop"] = torch.stack([pose_p["y0"], pose_p["x0"]], 1).to(clip.device)
        out["aug_flip"] = p["flip"].to(clip.device)
        if "iframes" in batch:
            fr = batch["iframes"]
            k = fr.shape[1]
            if k:
                pi = self._params(b * k, h, w, generator)
                v = self._video(fr.reshape(b * k, 1, h, w, 3), pi)  # (B*K, 3, 1, c, c)
                out["iframes"] = v[:, :, 0].reshape(b, k, 3, self.crop, self.crop)
            else:
                out["iframes"] = fr.new_zeros((b, 0, 3, self.crop, self.crop), dtype=torch.float32)
        return out


def normalize_person_poses(pose: torch.Tensor, mask: torch.Tensor, future: torch.Tensor | None = None,
                           future_mask: torch.Tensor | None = None, min_scale: float = 0.02
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Person-centred pose coordinates, one frame of reference per clip.

    pose (B, T, J, >=2) and mask (B, T, J) are the observed clip's poses in crop coordinates. Per clip,
    the centre is the mean of every observed joint over all T frames and the scale their RMS distance
    from it; x, y of `pose` and of `future` (B, T', J, >=2, the clip's continuation) become
    (p - centre) / scale, so where the person stands in the frame no longer matters but how the body
    moves through the clip (a jump, a walk) still does. Unobserved joints become 0 (the centre);
    channels after x, y (confidence) are kept. A clip with no observed joint keeps centre 0.5, scale 1.
    Joints filled by gap interpolation (`pose_max_gap`: x, y set, mask False) do not move the centre or
    the scale but are mapped with them, so the interpolation survives; only joints whose x and y are
    both exactly 0 (never observed, not filled) become 0.
    """
    w = mask.to(pose.dtype)[..., None]                                   # (B, T, J, 1)
    n = w.sum(dim=(1, 2))                                                # (B, 1)
    xy = pose[..., :2]
    centre = torch.where(n > 0, (xy * w).sum(dim=(1, 2)) / n.clamp(min=1), torch.full_like(n, 0.5))
    centre = centre[:, None, None]                                       # (B, 1, 1, 2)
    d2 = (((xy - centre) ** 2).sum(-1, keepdim=True) * w).sum(dim=(1, 2)) / n.clamp(min=1)
    scale = torch.where(n > 0, d2.sqrt().clamp(min=min_scale), torch.ones_like(n))[:, None, None]

    def apply(p: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        out = p.clone()
        present = m.bool() | (p[..., :2] != 0).any(-1)   # observed, or filled by gap interpolation
        out[..., :2] = torch.where(present[..., None], (p[..., :2] - centre) / scale, torch.zeros_like(p[..., :2]))
        return out

    return apply(pose, mask), (apply(future, future_mask) if future is not None else None)


class _AfterAugment(torch.nn.Module):
    """Runs an augmentation, then resizes its clips and I-frames to `size` (None: kept) and, with
    `pose_norm="person"`, re-expresses poses in the person's frame (`normalize_person_poses`)."""

    def __init__(self, augment: torch.nn.Module, size: int | None, pose_norm: str):
        super().__init__()
        self.augment, self.size, self.pose_norm = augment, size, pose_norm

    def forward(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        out = self.augment(batch, generator)
        for key in ("clip", "future_clip", "iframes") if self.size else ():
            x = out.get(key)
            if isinstance(x, torch.Tensor) and x.is_floating_point() and x.shape[-1] != self.size:
                lead = x.shape[:-2]
                if x.numel():
                    x = F.interpolate(x.reshape(-1, 1, *x.shape[-2:]), size=(self.size, self.size),
                                      mode="bilinear", align_corners=False, antialias=True)
                out[key] = x.reshape(*lead, self.size, self.size) if x.numel() else x.new_zeros(*lead, self.size, self.size)
        if self.pose_norm == "person" and "pose" in out:
            has_future = "future_pose" in out
            out["pose"], future = normalize_person_poses(
                out["pose"], out["pose_mask"], out.get("future_pose"), out.get("future_pose_mask"))
            if has_future:
                out["future_pose"] = future
        return out


def make_augment(names: list[str], crop: int, train: bool, input_size: int | None = None,
                 pose_norm: str = "crop", video_targets: bool = False) -> torch.nn.Module:
    """ClipAugment with the configured subset of the paper's augmentations (random crop is always on),
    followed by a resize to `input_size` when it differs from `crop` (cheap CPU configs see the whole
    112-px crop at low resolution instead of a small fragment of the frame) and by the pose
    normalisation `pose_norm` (train.data.POSE_NORMS). `video_targets` adds `clip_target` and
    `future_clip_target`: the clips with the same crop and flip but without colour jitter or blur (what
    the video generators must reproduce; the photometric changes are what context matching learns to
    ignore)."""
    if pose_norm not in POSE_NORMS:
        raise ValueError(f"pose_norm must be one of {POSE_NORMS}, got {pose_norm!r}")
    aug = ClipAugment(crop=crop, train=train,
                      flip_p=0.5 if "flip" in names else 0.0,
                      jitter_p=0.8 if "color_jitter" in names else 0.0,
                      blur_p=0.5 if "gaussian_blur" in names else 0.0, video_targets=video_targets)
    size = None if input_size in (None, crop) else int(input_size)
    return aug if size is None and pose_norm == "crop" else _AfterAugment(aug, size, pose_norm)
