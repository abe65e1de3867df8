"""ClipDataset / EvalClipDataset over a tiny contract store whose pixels encode their frame index."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from csvr.train.data import ClipDataset, ClipSpec, EvalClipDataset, ShardLocalSampler
from data_fakestore import fake_keypoints, fake_main_actor, write_fake_store

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_fake_store(tmp_path_factory.mktemp("data_ds") / "fake.zarr")


def test_shapes_and_dtypes(store):
    ds = ClipDataset(store, split="train", spec=ClipSpec(frames=16, stride=4, future_frames=16, max_iframes=4))
    s = ds[(0, 123)]
    expect = {
        "clip": ((16, 128, 171, 3), torch.uint8), "future_clip": ((16, 128, 171, 3), torch.uint8),
        "frame_indices": ((32,), torch.int64), "pose": ((16, 17, 3), torch.float32),
        "future_pose": ((16, 17, 3), torch.float32), "pose_mask": ((16, 17), torch.bool),
        "future_pose_mask": ((16, 17), torch.bool), "iframes": ((4, 128, 171, 3), torch.uint8),
        "iframe_mask": ((4,), torch.bool), "iframe_fallback": ((), torch.bool), "label": ((), torch.int64),
        "video_index": ((), torch.int64),
    }
    for key, (shape, dtype) in expect.items():
        assert tuple(s[key].shape) == shape and s[key].dtype == dtype, key


def test_frames_follow_stride_and_future_follows_clip(store):
    ds = ClipDataset(store, split="train")
    for seed in range(5):
        s = ds[(1, seed)]
        idx = s["frame_indices"].numpy()
        assert np.all(np.diff(idx) == 4) and not bool(s["short_video"])  # clip and future: one stride-4 run
        pixels = np.concatenate([s["clip"][:, 0, 0, 0].numpy(), s["future_clip"][:, 0, 0, 0].numpy()])
        assert (pixels == idx % 256).all()  # the frames really are those indices
        assert (s["clip"][:, 3, 7, 1] == 1).all() and int(s["video_index"]) == 1 and int(s["label"]) == 1
    assert ds[(1, 7)]["frame_indices"].tolist() == ds[(1, 7)]["frame_indices"].tolist()  # seed -> same sample


def test_iframes_are_exactly_those_in_the_window(store):
    ds = ClipDataset(store, split="train", spec=ClipSpec(max_iframes=8))
    seen_counts = set()
    for seed in range(12):
        s = ds[(0, seed)]
        start = int(s["frame_indices"][0])
        expected = [f for f in range(0, 150, 12) if start <= f < start + 64]
        got = s["iframe_indices"][s["iframe_mask"]].tolist()
        assert got == expected and int(s["num_iframes_in_window"]) == len(expected)
        assert not bool(s["iframe_fallback"])
        imgs = s["iframes"][s["iframe_mask"]]
        assert imgs[:, 0, 0, 0].tolist() == [f % 256 for f in expected]  # the images are those frames
        assert (s["iframes"][~s["iframe_mask"]] == 0).all()  # padding is masked
        seen_counts.add(len(expected))
    assert seen_counts <= {5, 6}


def test_iframe_fallback_is_flagged(store):
    spec = ClipSpec(frames=4, stride=2, future_frames=4, max_iframes=3)
    ds = ClipDataset(store, split="train", spec=spec)
    s = ds.load(2, 20)  # video 2 has a single I-frame at 0; window [20, 28) holds none
    assert bool(s["iframe_fallback"]) and int(s["num_iframes_in_window"]) == 0
    assert s["iframe_mask"].tolist() == [True, False, False] and int(s["iframe_indices"][0]) == 0
    assert int(s["iframes"][0, 0, 0, 0]) == 0


def test_short_video_loops_or_pads_never_zeros(store):
    ds = ClipDataset(store, split="train")  # video 2 has 40 frames < 125-frame span
    s = ds.load(2, 30)
    idx = s["frame_indices"].numpy()
    assert bool(s["short_video"]) and idx.tolist() == [(30 + 4 * k) % 40 for k in range(32)]
    assert (s["clip"][:, 0, 0, 0].numpy() == idx[:16]).all() and (s["clip"][:, 0, 0, 1] == 2).all()
    pad = ClipDataset(store, split="train", spec=ClipSpec(short_video="pad"))
    s = pad.load(2, 0)
    assert s["frame_indices"].max() == 39 and (s["future_clip"][-1, 0, 0, 0] == 39)


def test_pose_is_the_main_actor_with_observed_mask(store):
    ds = ClipDataset(store, split="train", spec=ClipSpec(pose_max_gap=0))
    for seed in range(6):
        s = ds[(0, seed)]
        idx = s["frame_indices"].numpy()
        kp = fake_keypoints(0, idx, 2)
        ma = fake_main_actor(idx)
        pose = torch.cat([s["pose"], s["future_pose"]]).numpy()
        mask = torch.cat([s["pose_mask"], s["future_pose_mask"]]).numpy()
        for t in range(len(idx)):
            for j in range(17):
                observed = ma[t] >= 0 and not (j == 3 and idx[t] % 7 == 3)
                assert mask[t, j] == observed
                if observed:
                    np.testing.assert_allclose(pose[t, j], kp[t, ma[t], j], atol=2e-3)
                else:
                    assert (pose[t, j] == 0).all()


def test_eval_clips_deterministic_and_spread(store):
    ds = EvalClipDataset(store, split="test", spec=ClipSpec(future_frames=0), num_clips=10)
    assert len(ds) == 20
    starts = [int(ds[i]["frame_indices"][0]) for i in range(10)]
    assert starts[0] == 0 and starts[-1] == 160 - 61 and starts == sorted(starts)
    assert [int(ds[i]["clip_index"]) for i in range(10)] == list(range(10))
    assert int(ds[10]["video_index"]) == 5
    assert ds[3]["frame_indices"].tolist() == ds[3]["frame_indices"].tolist()


@pytest.mark.filterwarnings("ignore:.*pin_memory")
def test_dataloader_workers_persistent_pinned(store):
    ds = ClipDataset(store, split="train", spec=ClipSpec(frames=4, future_frames=4, max_iframes=2))
    sampler = ShardLocalSampler(ds, num_replicas=1, rank=0, seed=3)
    loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=2, persistent_workers=True,
                        pin_memory=True, multiprocessing_context="fork")
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(loader)
        vids = torch.cat([b["video_index"] for b in batches]).tolist()
        assert sorted(vids) == [0, 1, 2]
        assert batches[0]["clip"].shape[1:] == (4, 128, 171, 3)


def test_dataset_pickles_and_runs_in_spawned_worker(store):
    import pickle

    ds = ClipDataset(store, split="train", spec=ClipSpec(frames=4, future_frames=4, max_iframes=2))
    a = ds[(1, 42)]
    ds2 = pickle.loads(pickle.dumps(ds))
    b = ds2[(1, 42)]
    assert all(torch.equal(a[k], b[k]) for k in a)
    loader = DataLoader(ds, batch_size=3, sampler=ShardLocalSampler(ds, num_replicas=1, rank=0, seed=1),
                        num_workers=1, multiprocessing_context="spawn")
    (batch,) = list(loader)
    assert sorted(batch["video_index"].tolist()) == [0, 1, 2]


FULL = ClipSpec(frames=4, stride=2, future_frames=4, max_iframes=3)


def _same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("cls", [ClipDataset, EvalClipDataset])
def test_getitems_batch_equals_per_item_samples(store, cls):
    from torch.utils.data import default_collate

    from csvr.train.data import SampleBatch, collate_samples

    ds = cls(store, split=None, spec=FULL)
    keys = [(0, 11), (2, 5), (1, 7), (0, 11)]
    got = ds.__getitems__(keys)
    assert isinstance(got, SampleBatch) and len(got) == 4
    want = default_collate([ds[k] for k in keys])
    _same(collate_samples(got), want)
    _same(default_collate(got), want)  # plain default_collate on the batch object gives the same batch
    _same(got[1], ds[keys[1]])


def test_worker_crop_is_the_uncropped_sample_at_the_origin(store):
    plain = ClipDataset(store, split=None, spec=FULL)
    cropped = ClipDataset(store, split=None, spec=ClipSpec(frames=4, stride=2, future_frames=4, max_iframes=3, crop=112))
    origins = set()
    for seed in range(6):
        a, b = plain[(seed % 3, seed)], cropped[(seed % 3, seed)]
        y0, x0 = b["crop_origin"].tolist()
        origins.add((y0, x0))
        assert 0 <= y0 <= 128 - 112 and 0 <= x0 <= 171 - 112 and b["frame_size"].tolist() == [128, 171]
        assert torch.equal(b["clip"], a["clip"][:, y0:y0 + 112, x0:x0 + 112])
        assert torch.equal(b["future_clip"], a["future_clip"][:, y0:y0 + 112, x0:x0 + 112])
        for key in ("frame_indices", "pose", "pose_mask", "iframe_mask", "iframe_indices", "label"):
            assert torch.equal(a[key], b[key]), key
        for j in range(3):
            iy, ix = b["iframe_crop_origin"][j].tolist()
            if b["iframe_mask"][j]:
                assert torch.equal(b["iframes"][j], a["iframes"][j, iy:iy + 112, ix:ix + 112])
            else:
                assert (iy, ix) == (-1, -1) and not b["iframes"][j].any()
    assert len(origins) > 1  # random, not fixed
    ev = EvalClipDataset(store, split=None, spec=ClipSpec(future_frames=0, max_iframes=0, crop=112), num_clips=2)
    assert ev[0]["crop_origin"].tolist() == [8, 29]  # centre crop at 128x171


def test_worker_crop_then_augment_keeps_pose_on_the_pixels(store):
    """Frames cropped in the worker + ClipAugment give exactly what device-side cropping gives."""
    from csvr.train.data import ClipAugment, collate_samples

    spec_c = ClipSpec(frames=4, stride=2, future_frames=4, max_iframes=3, crop=112)
    cropped = ClipDataset(store, split=None, spec=spec_c)
    plain = ClipDataset(store, split=None, spec=FULL)
    keys = [(i % 3, 40 + i) for i in range(6)]
    pre = collate_samples(cropped.__getitems__(keys))
    full = collate_samples(plain.__getitems__(keys))
    aug = ClipAugment(crop=112, train=True, jitter_p=0.0, blur_p=0.0, normalize=False)
    out = aug(pre, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out["aug_crop"], pre["crop_origin"])
    # reference: the device path on the uncropped frames with the worker's crop origins
    n = len(keys)
    ref_p = {"y0": pre["crop_origin"][:, 0], "x0": pre["crop_origin"][:, 1], "flip": out["aug_flip"].cpu(),
             "brightness": torch.ones(n), "contrast": torch.ones(n), "saturation": torch.ones(n),
             "hue": torch.zeros(n), "blur": torch.zeros(n, dtype=torch.bool), "sigma": torch.ones(n)}
    ref_video = aug._video(torch.cat([full["clip"], full["future_clip"]], 1), ref_p)
    assert torch.equal(torch.cat([out["clip"], out["future_clip"]], 2), ref_video)
    ref_pose, ref_mask = aug._pose(full["pose"], full["pose_mask"], 128, 171, ref_p)
    torch.testing.assert_close(out["pose"], ref_pose)
    assert torch.equal(out["pose_mask"], ref_mask)
    # and numerically: x' * 112 = x * W - x0 (before the flip), per sample
    i = int(torch.nonzero(~out["aug_flip"])[0]) if (~out["aug_flip"]).any() else None
    if i is not None:
        y0, x0 = pre["crop_origin"][i].tolist()
        seen = pre["pose_mask"][i]
        x = out["pose"][i][..., 0][seen] * 112
        y = out["pose"][i][..., 1][seen] * 112
        torch.testing.assert_close(x, full["pose"][i][..., 0][seen] * 171 - x0)
        torch.testing.assert_close(y, full["pose"][i][..., 1][seen] * 128 - y0)
    with pytest.raises(ValueError, match="cropped in the worker"):
        ClipAugment(crop=96)(pre)


def test_dataloader_with_collate_samples_and_workers(store):
    from csvr.train.data import collate_samples

    ds = ClipDataset(store, split="train", spec=ClipSpec(frames=4, future_frames=4, max_iframes=2, crop=112))
    sampler = ShardLocalSampler(ds, num_replicas=1, rank=0, seed=3)
    ref = [collate_samples(ds.__getitems__(list(b))) for b in torch.utils.data.BatchSampler(sampler, 2, False)]
    loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=2, collate_fn=collate_samples,
                        multiprocessing_context="fork")
    got = list(loader)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        _same(g, r)


def test_pose_only_recipe_reads_no_pixels(store):
    spec = ClipSpec(frames=8, stride=4, future_frames=8, max_iframes=0, pixels=False)
    full = ClipSpec(frames=8, stride=4, future_frames=8, max_iframes=0)
    s = ClipDataset(store, split="train", spec=spec)[(0, 7)]
    ref = ClipDataset(store, split="train", spec=full)[(0, 7)]
    assert s["clip"].shape[0] == 0 and s["future_clip"].shape[0] == 0
    torch.testing.assert_close(s["pose"], ref["pose"])
    torch.testing.assert_close(s["future_pose"], ref["future_pose"])
    with pytest.raises(ValueError, match="pixels=False"):
        ClipSpec(frames=8, max_iframes=2, pixels=False)


def test_worker_crop_draws_the_same_distribution_as_the_device_crop(store):
    """The reader-side crop replaces ClipAugment's random crop in training, so its origins must have the
    same law: (y0, x0) uniform over [0, H-c] x [0, W-c] (as `torch.randint(0, H-c+1)` in ClipAugment),
    one origin shared by clip and future clip, each I-frame an independent one."""
    from csvr.train.data import ClipAugment

    c, (h, w) = 112, (128, 171)
    ds = ClipDataset(store, split=None, spec=ClipSpec(frames=1, stride=1, future_frames=1, max_iframes=2,
                                                      crop=c, poses=False))
    n = 1500
    batch = ds.__getitems__([(i % len(ds), 1000 + i) for i in range(n)]).collated
    y, x = batch["crop_origin"][:, 0].numpy(), batch["crop_origin"][:, 1].numpy()
    ref = ClipAugment(crop=c)._params(n, h, w, torch.Generator().manual_seed(0))
    ry, rx = ref["y0"].numpy(), ref["x0"].numpy()
    assert (y.min(), y.max(), x.min(), x.max()) == (0, h - c, 0, w - c) == (ry.min(), ry.max(), rx.min(), rx.max())
    assert len(np.unique(y)) == h - c + 1 and len(np.unique(x)) == w - c + 1  # every origin occurs
    for a, b, size in ((y, ry, h - c + 1), (x, rx, w - c + 1)):  # same mean and spread as the device draws
        sd = np.sqrt((size ** 2 - 1) / 12) / np.sqrt(n)  # standard error of a discrete uniform's mean
        assert abs(a.mean() - (size - 1) / 2) < 4 * sd and abs(b.mean() - (size - 1) / 2) < 4 * sd
        assert abs(a.std() / b.std() - 1) < 0.1
    # the I-frames' origins are drawn on their own (not the clip's)
    io = batch["iframe_crop_origin"]
    real = batch["iframe_mask"]
    assert (io[real] != batch["crop_origin"][:, None].expand_as(io)[real]).any(-1).float().mean() > 0.9


def test_a_crop_larger_than_the_frames_fails_on_the_first_read(store):
    ds = ClipDataset(store, split=None, spec=ClipSpec(frames=2, future_frames=0, max_iframes=0, crop=200))
    with pytest.raises(ValueError, match="larger than the store's frames 128x171"):
        ds[(0, 1)]
    with pytest.raises(ValueError, match="larger than the store's frames"):
        ds.batch_layout(2)


def test_a_frame_step_store_serves_the_recipe_exactly_or_refuses(tmp_path):
    from data_fakestore import FakeStoreSpec

    store = write_fake_store(tmp_path / "step2.zarr", FakeStoreSpec(frame_step=2))
    ds = ClipDataset(store, split="train", spec=ClipSpec(frames=4, stride=4, future_frames=0, max_iframes=0))
    assert ds.stride == 2  # 4 source frames = 2 stored frames
    s = ds[(0, 0)]
    stored = np.asarray(s["clip"])[:, 0, 0, 0].astype(int)  # the fake frame's red channel = its stored index in the video
    assert (np.diff(stored) == 2).all()          # every 2nd stored frame = every 4th source frame
    with pytest.raises(ValueError, match="cannot be served exactly"):
        ClipDataset(store, split="train", spec=ClipSpec(frames=4, stride=3, future_frames=0, max_iframes=0))
