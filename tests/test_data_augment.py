"""ClipAugment: poses follow the crop and flip exactly; clip and future share parameters; I-frames do not."""

from __future__ import annotations

import torch

from csvr.train.data import COCO_FLIP_PERM, KINETICS_MEAN, KINETICS_STD, ClipAugment
from csvr.train.data.augment import color_jitter, gaussian_blur

torch.set_num_threads(1)
H, W, C = 128, 171, 112


def _marker_batch(b: int = 6, t: int = 2, tf: int = 2, k: int = 3) -> dict[str, torch.Tensor]:
    """Frames with one marker pixel per joint (value 10 + joint) at the joint's pose position."""
    video = torch.zeros(b, t + tf, H, W, 3, dtype=torch.uint8)
    pose = torch.zeros(b, t + tf, 17, 3)
    for j in range(17):
        for i in range(b):
            for f in range(t + tf):
                py, px = 20 + 5 * j + f, 60 + 3 * j + i  # always inside any 112x112 crop
                video[i, f, py, px, 0] = 10 + j
                pose[i, f, j] = torch.tensor([(px + 0.5) / W, (py + 0.5) / H, 1.0])
    mask = torch.ones(b, t + tf, 17, dtype=torch.bool)
    mask[:, :, 4] = False  # an unobserved joint: mask must move with the flip
    pose[:, :, 16] = 0  # a missing joint (all zero) stays zero
    xcol = torch.arange(W, dtype=torch.uint8).view(1, 1, 1, W).expand(b, k, H, W)
    iframes = torch.zeros(b, k, H, W, 3, dtype=torch.uint8)
    iframes[..., 2] = xcol
    return {"clip": video[:, :t].clone(), "future_clip": video[:, t:].clone(), "pose": pose[:, :t].clone(),
            "future_pose": pose[:, t:].clone(), "pose_mask": mask[:, :t].clone(),
            "future_pose_mask": mask[:, t:].clone(), "iframes": iframes}


def test_pose_crop_flip_consistency_numerically():
    batch = _marker_batch()
    aug = ClipAugment(crop=C, train=True, flip_p=0.5, jitter_p=0.0, blur_p=0.0, normalize=False)
    out = aug(batch, generator=torch.Generator().manual_seed(3))
    flips = out["aug_flip"].tolist()
    assert any(flips) and not all(flips)
    assert out["clip"].shape == (6, 3, 2, C, C) and out["future_clip"].shape == (6, 3, 2, C, C)
    video = torch.cat([out["clip"], out["future_clip"]], 2)  # (B, 3, T+T', C, C)
    pose = torch.cat([out["pose"], out["future_pose"]], 1)
    mask = torch.cat([out["pose_mask"], out["future_pose_mask"]], 1)
    for i in range(6):
        for f in range(4):
            for j in range(17):
                src = COCO_FLIP_PERM[j] if flips[i] else j
                if src == 16:  # the missing joint: stays exactly zero wherever the flip moves it
                    assert (pose[i, f, j] == 0).all()
                    continue
                x, y = pose[i, f, j, 0].item() * C - 0.5, pose[i, f, j, 1].item() * C - 0.5
                px, py = round(x), round(y)
                assert abs(x - px) < 1e-3 and abs(y - py) < 1e-3
                assert round(video[i, 0, f, py, px].item() * 255) == 10 + src, (i, f, j)
                assert mask[i, f, j].item() == (src != 4)
    # the future clip used the same crop as the clip: one (y0, x0) per sample reproduces both
    y0, x0 = out["aug_crop"][0].tolist()
    assert abs(out["pose"][0, 0, 0, 1].item() * C - (20.5 - y0)) < 1e-3


def test_iframes_get_their_own_views():
    batch = _marker_batch(b=4, k=3)
    out = ClipAugment(crop=C, jitter_p=0.0, blur_p=0.0, normalize=False, flip_p=0.0)(
        batch, generator=torch.Generator().manual_seed(0))
    assert out["iframes"].shape == (4, 3, 3, C, C)
    x0_iframes = (out["iframes"][:, :, 2, 0, 0] * 255).round().long()  # first column = crop offset x0
    assert len(set(x0_iframes.flatten().tolist())) > 3
    assert ((out["iframes"][:, :, 2, 0, 1:] * 255).round().long() - x0_iframes[..., None] ==
            torch.arange(1, C)).all()


def test_eval_centre_crop_and_normalisation():
    b = {"clip": torch.full((2, 3, H, W, 3), 128, dtype=torch.uint8),
         "future_clip": torch.full((2, 2, H, W, 3), 128, dtype=torch.uint8),
         "iframes": torch.full((2, 1, H, W, 3), 128, dtype=torch.uint8)}
    out = ClipAugment(crop=C, train=False)(b)
    assert out["aug_crop"].tolist() == [[8, 29], [8, 29]] and not out["aug_flip"].any()
    expect = (128 / 255 - torch.tensor(KINETICS_MEAN)) / torch.tensor(KINETICS_STD)
    assert torch.allclose(out["clip"][0, :, 0, 5, 5], expect, atol=1e-5)
    assert out["clip"].dtype == torch.float32 and out["iframes"].shape == (2, 1, 3, C, C)


def test_train_mode_is_reproducible_and_jitter_shared_by_clip_and_future():
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 4, H, W, 3), dtype=torch.uint8, generator=gen)
    b = {"clip": frames[:, :2], "future_clip": frames[:, 2:].clone()}
    b["future_clip"][:, 0] = frames[:, 1]  # future frame 0 == clip frame 1 -> identical after augmentation
    aug = ClipAugment(crop=C, jitter_p=1.0, blur_p=1.0)
    o1 = aug(b, generator=torch.Generator().manual_seed(5))
    o2 = aug(b, generator=torch.Generator().manual_seed(5))
    assert torch.equal(o1["clip"], o2["clip"])
    assert torch.allclose(o1["clip"][:, :, 1], o1["future_clip"][:, :, 0], atol=1e-5)


def test_jitter_and_blur_basics():
    gray = torch.full((2, 3, 1, 8, 8), 0.5)
    assert torch.allclose(color_jitter(gray, torch.ones(2), torch.ones(2), torch.tensor([2.0, 0.3]),
                                       torch.tensor([0.1, -0.1])), gray, atol=1e-5)
    x = torch.rand(2, 3, 2, 16, 16)
    assert torch.allclose(color_jitter(x.clone(), torch.ones(2), torch.ones(2), torch.ones(2), torch.zeros(2)), x)
    const = torch.full((2, 3, 2, 16, 16), 0.25)
    assert torch.allclose(gaussian_blur(const, torch.tensor([0.5, 2.0]), 13), const, atol=1e-6)
    imp = torch.zeros(1, 3, 1, 32, 32)
    imp[..., 16, 16] = 1
    blurred = gaussian_blur(imp, torch.tensor([1.5]), 13)
    assert abs(blurred.sum().item() - 3.0) < 1e-4 and blurred[0, 0, 0, 16, 16] < 0.2


def test_person_normalisation_centres_and_scales_each_clip():
    from csvr.train.data import normalize_person_poses

    torch.manual_seed(0)
    b, t, tf = 3, 5, 4
    pose = torch.rand(b, t, 17, 3)
    future = torch.rand(b, tf, 17, 3)
    mask = torch.rand(b, t, 17) > 0.2
    fmask = torch.rand(b, tf, 17) > 0.2
    pose[~mask], future[~fmask] = 0, 0  # never observed: zeros, as the store and the augmentation give them
    out, fut = normalize_person_poses(pose, mask, future, fmask)
    for i in range(b):
        xy = out[i, ..., :2][mask[i]]
        torch.testing.assert_close(xy.mean(0), torch.zeros(2), atol=1e-5, rtol=0)          # centred
        torch.testing.assert_close(xy.square().sum(-1).mean(), torch.tensor(1.0))         # unit RMS radius
        # the future is expressed in the current clip's frame: same shift and scale
        src = pose[i, ..., :2][mask[i]]
        centre, scale = src.mean(0), (src - src.mean(0)).square().sum(-1).mean().sqrt()
        torch.testing.assert_close(fut[i, ..., :2][fmask[i]], (future[i, ..., :2][fmask[i]] - centre) / scale)
    assert (out[..., :2][~mask] == 0).all() and (fut[..., :2][~fmask] == 0).all()       # unobserved -> 0
    torch.testing.assert_close(out[..., 2], pose[..., 2])                                  # confidence kept
    # translating the whole person (a different place in the frame) changes nothing
    shifted, _ = normalize_person_poses(torch.where(mask[..., None], pose + torch.tensor([0.1, -0.05, 0.0]), pose),
                                        mask)
    torch.testing.assert_close(shifted, out, atol=1e-5, rtol=0)
    # a clip with no observed joint is left at the crop's centre / scale 1 and stays finite
    none = torch.zeros(1, t, 17, dtype=torch.bool)
    empty, _ = normalize_person_poses(torch.zeros_like(pose[:1]), none)
    assert torch.isfinite(empty).all() and (empty[..., :2] == 0).all()
    filled, _ = normalize_person_poses(pose[:1], none)  # every joint gap-filled: centre 0.5, scale 1
    xy0 = pose[:1, ..., :2]
    torch.testing.assert_close(filled[..., :2], torch.where((xy0 != 0).any(-1, keepdim=True), xy0 - 0.5, 0.0))


def test_make_augment_applies_the_configured_pose_norm():
    import pytest

    from csvr.train.data import make_augment

    batch = _marker_batch()
    crop = make_augment([], C, train=False)(batch)
    person = make_augment([], C, train=False, pose_norm="person")(batch)
    torch.testing.assert_close(person["clip"], crop["clip"])
    m = person["pose_mask"]
    assert person["pose"][..., :2][m].mean().abs() < 1e-4 and crop["pose"][..., :2][m].mean() > 0.2
    with pytest.raises(ValueError, match="pose_norm must be one of"):
        make_augment([], C, train=False, pose_norm="image")


def test_pose_only_batch_passes_the_training_augmentation():
    from csvr.train.data import make_augment

    batch = _marker_batch()
    batch["clip"], batch["future_clip"] = batch["clip"][:, :0], batch["future_clip"][:, :0]
    batch["iframes"] = batch["iframes"][:, :0]
    aug = make_augment(["flip", "color_jitter", "gaussian_blur"], C, train=True, input_size=56, pose_norm="person")
    out = aug(batch, torch.Generator().manual_seed(0))
    assert out["clip"].shape == (6, 3, 0, 56, 56) and out["iframes"].shape[1] == 0
    assert torch.isfinite(out["pose"]).all() and out["pose"].shape == batch["pose"].shape


def test_person_normalisation_keeps_gap_interpolated_joints():
    """`pose_max_gap` fills short gaps (x, y set, mask False); the normalisation maps them with the clip's
    centre and scale instead of zeroing them, and they do not move the centre."""
    import numpy as np

    from csvr.train.data import normalize_person_poses
    from csvr.train.data.sampling import interpolate_gaps

    t = 6
    kp = np.zeros((t, 17, 3), np.float32)
    observed = np.ones((t, 17), bool)
    kp[..., 0] = np.linspace(0.2, 0.7, t)[:, None]
    kp[..., 1] = np.linspace(0.3, 0.6, 17)[None, :]
    kp[..., 2] = 1
    observed[2:4, 5] = False
    kp[2:4, 5] = 0                                    # a 2-frame gap of the left shoulder
    filled = interpolate_gaps(kp, observed, max_gap=2)
    assert (filled[2:4, 5, :2] != 0).all()
    pose = torch.from_numpy(filled)[None]
    mask = torch.from_numpy(observed)[None]
    out, _ = normalize_person_poses(pose, mask)
    xy = pose[0, ..., :2][mask[0]]
    centre = xy.mean(0)
    scale = (xy - centre).square().sum(-1).mean().sqrt()
    torch.testing.assert_close(out[0, 2:4, 5, :2], (pose[0, 2:4, 5, :2] - centre) / scale)
    # without the fill the joint stays at 0 (unobserved, no interpolation)
    out0, _ = normalize_person_poses(torch.from_numpy(kp)[None], mask)
    assert (out0[0, 2:4, 5, :2] == 0).all()


def test_video_targets_share_the_geometry_but_not_the_photometric_changes():
    """The generators' L2 targets: the same crop and flip as the clip, without colour jitter or blur."""
    from csvr.train.data import ClipAugment

    torch.manual_seed(0)
    b, t, h, w = 4, 3, 20, 24
    batch = {"clip": torch.randint(0, 256, (b, t, h, w, 3), dtype=torch.uint8),
             "future_clip": torch.randint(0, 256, (b, 2, h, w, 3), dtype=torch.uint8)}
    full = ClipAugment(crop=16, train=True, flip_p=0.5, jitter_p=1.0, blur_p=1.0, video_targets=True)
    plain = ClipAugment(crop=16, train=True, flip_p=0.5, jitter_p=0.0, blur_p=0.0)
    out = full(batch, torch.Generator().manual_seed(3))
    ref = plain(batch, torch.Generator().manual_seed(3))  # same draws: crop and flip come first
    torch.testing.assert_close(out["clip_target"], ref["clip"])
    torch.testing.assert_close(out["future_clip_target"], ref["future_clip"])
    assert not torch.allclose(out["clip"], out["clip_target"])          # the input clip is jittered
    assert "clip_target" not in plain(batch)                             # only when asked for
