"""Baselines next to the video generators' PSNR / SSIM (`evaluate.video_baselines`): known answers on
synthetic arrays, the streaming accumulators, the pipeline wiring and the report rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from csvr.evaluate import metrics as M
from csvr.evaluate import video_baselines as VB

torch.set_num_threads(1)


def _blobs(rng: np.random.Generator, n: int, t: int = 4, size: int = 16, noise: float = 0.02) -> np.ndarray:
    """(n, t, size, size, 3) in [0, 1]: a random coarse 4x4 colour pattern per clip, upsampled, + noise."""
    base = rng.random((n, 1, 4, 4, 3)).repeat(size // 4, 2).repeat(size // 4, 3)
    return np.clip(base + rng.normal(0, noise, (n, t, size, size, 3)), 0, 1).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# streaming PSNR / SSIM
# --------------------------------------------------------------------------------------------------


def test_frame_quality_accumulator_equals_the_concatenated_metrics():
    rng = np.random.default_rng(0)
    real = [rng.random((b, 3, 16, 16, 3)) for b in (2, 1, 3)]
    gen = [np.clip(r + rng.normal(0, 0.1, r.shape), 0, 1) for r in real]
    acc = M.FrameQualityAccumulator()
    for g, r in zip(gen, real):
        acc.add(g, r)
    assert acc.num_frames == 18
    assert acc.psnr() == pytest.approx(M.psnr(np.concatenate(gen), np.concatenate(real)), rel=1e-12)
    assert acc.ssim() == pytest.approx(M.ssim(np.concatenate(gen), np.concatenate(real)), rel=1e-12)
    with pytest.raises(ValueError, match="after frames"):
        acc.add(np.zeros((1, 12, 12, 3)), np.zeros((1, 12, 12, 3)))
    with pytest.raises(ValueError, match="empty"):
        M.FrameQualityAccumulator().psnr()


# --------------------------------------------------------------------------------------------------
# known answers
# --------------------------------------------------------------------------------------------------


def test_static_clip_copy_baselines_are_exact():
    """A static clip: repeating its first frame reconstructs it exactly (capped 100 dB, SSIM 1); a future
    equal to the last observed frame is predicted exactly by repeating it."""
    rng = np.random.default_rng(1)
    frame = rng.random((2, 1, 16, 16, 3)).astype(np.float32)
    static = np.repeat(frame, 5, axis=1)
    b = VB.VideoBaselines()  # no train clips: only the copy baselines
    b.add_reconstruction(static)
    b.add_prediction(static, np.repeat(frame, 3, axis=1))
    s = b.section()
    assert set(s["reconstruction"]) == {"first_frame"} and set(s["prediction"]) == {"last_frame"}
    assert s["reconstruction"]["first_frame"] == {"psnr": 100.0, "ssim": pytest.approx(1.0), "num_frames": 8}
    assert s["prediction"]["last_frame"]["psnr"] == 100.0
    assert s["prediction"]["last_frame"]["ssim"] == pytest.approx(1.0)
    assert s["num_test_clips"] == {"reconstruction": 2, "prediction": 2}


def test_first_frame_is_scored_on_the_frames_it_guesses_and_last_frame_on_the_future():
    """Clip of constant frames 0.0, 0.1, 0.2, 0.3: the copy of frame 1 is off by 0.1, 0.2, 0.3 on frames
    2..4 (frame 1 itself, exact by construction, is not scored); the last frame (0.3) against a future
    of 0.5 is off by 0.2 everywhere."""
    clip = np.stack([np.full((16, 16, 3), v, np.float32) for v in (0.0, 0.1, 0.2, 0.3)])[None]
    future = np.full((1, 2, 16, 16, 3), 0.5, np.float32)
    b = VB.VideoBaselines()
    b.add_reconstruction(clip)
    b.add_prediction(clip, future)
    s = b.section()
    expect = np.mean([10 * math.log10(1 / d**2) for d in (0.1, 0.2, 0.3)])
    assert s["reconstruction"]["first_frame"]["psnr"] == pytest.approx(expect, rel=1e-5)
    assert s["reconstruction"]["first_frame"]["num_frames"] == 3
    assert s["prediction"]["last_frame"]["psnr"] == pytest.approx(10 * math.log10(1 / 0.2**2), rel=1e-5)


def test_mean_frame_equals_the_analytic_value_and_respects_the_clip_limit():
    """Train clips: half constant 0.2, half constant 0.6 (per pixel), then one clip of 1.0 beyond the
    limit. Mean frame = 0.4 everywhere; against test frames of 0.9 its PSNR is 10 log10(1 / 0.5^2)."""
    cfg = VB.VideoBaselineConfig(max_train_clips=4, buffer_frames=5, ae_steps=0)
    tf = VB.TrainFrames(16, cfg)
    tf.add_frames(np.full((2, 3, 16, 16, 3), 0.2, np.float32))
    tf.add_frames(np.full((3, 3, 16, 16, 3), 0.6, np.float32))  # only 2 of these fit the limit
    tf.add_frames(np.full((2, 3, 16, 16, 3), 1.0, np.float32))  # ignored: limit reached
    assert tf.full and tf.num_clips == 4 and tf.num_frames == 12
    np.testing.assert_allclose(tf.mean_frame(), 0.4, rtol=1e-6)
    assert tf.buffer().shape == (5, 16, 16, 3)  # reservoir bounded by buffer_frames
    assert set(np.unique(tf.buffer())) <= {np.float32(0.2), np.float32(0.6)}
    b = tf.fit()
    assert b.ae is None
    b.add_reconstruction(np.full((2, 4, 16, 16, 3), 0.9, np.float32))
    b.add_prediction(None, np.full((1, 2, 16, 16, 3), 0.9, np.float32))
    s = b.section()
    expect = 10 * math.log10(1 / 0.5**2)
    assert s["reconstruction"]["mean_frame"]["psnr"] == pytest.approx(expect, rel=1e-5)
    assert s["prediction"]["mean_frame"]["psnr"] == pytest.approx(expect, rel=1e-5)
    assert "last_frame" not in s["prediction"]  # no observed clip given
    assert s["train"] == {"clips": 4, "frames": 12, "max_clips": 4, "source": ""}


def test_mean_frame_is_per_pixel():
    """A left/right split train set: the mean frame keeps the pixel layout (not a global mean)."""
    tf = VB.TrainFrames(16, VB.VideoBaselineConfig(ae_steps=0))
    a = np.zeros((1, 2, 16, 16, 3), np.float32)
    a[..., :, 8:, :] = 1.0
    b = np.zeros((1, 2, 16, 16, 3), np.float32)
    b[..., :, 8:, 0] = 0.5
    tf.add_frames(a)
    tf.add_frames(b)
    m = tf.mean_frame()
    np.testing.assert_allclose(m[:, :8], 0.0)
    np.testing.assert_allclose(m[:, 8:, 0], 0.75)
    np.testing.assert_allclose(m[:, 8:, 1:], 0.5)


def test_autoencoder_improves_on_the_mean_frame_and_is_seeded():
    rng = np.random.default_rng(2)
    cfg = VB.VideoBaselineConfig(ae_steps=150, ae_batch=16, buffer_frames=256, seed=3)
    tf = VB.TrainFrames(16, cfg)
    for _ in range(4):
        tf.add_frames(_blobs(rng, 8))
    b = tf.fit()
    assert b.ae is not None and b.ae.train_mse is not None
    test = _blobs(rng, 4)
    b.add_reconstruction(test)
    rec = b.section()["reconstruction"]
    assert rec["autoencoder"]["psnr"] > rec["mean_frame"]["psnr"] + 3.0, rec
    assert rec["autoencoder"]["ssim"] > rec["mean_frame"]["ssim"]
    # the same frames and seed: the same autoencoder, bit for bit
    again = VB.FrameAutoencoder(cfg).fit(tf.buffer())
    np.testing.assert_array_equal(again(test), b.ae(test))
    sec = b.section()["autoencoder"]
    assert sec["steps"] == 150 and sec["train_frames"] == 128 and sec["code_fraction"] == pytest.approx(8 * 16 / 768)


def test_clip_frames_matches_the_generator_target():
    """`clip_frames` is `train.steps.video_target` mapped to [0, 1] channels-last, as the generators' `real`."""
    from csvr.train.data import KINETICS_MEAN, KINETICS_STD
    from csvr.train.steps import video_target

    x01 = torch.rand(2, 3, 4, 32, 32)
    mean = torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1)
    clip = (x01 - mean) / std
    f = VB.clip_frames(clip, 16)
    assert f.shape == (2, 4, 16, 16, 3) and f.dtype == np.float32
    ref = ((video_target(clip, 16) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1).numpy()
    np.testing.assert_allclose(f, ref, atol=1e-6)
    np.testing.assert_allclose(VB.clip_frames(clip, 32), x01.permute(0, 2, 3, 4, 1).numpy(), atol=1e-5)


# --------------------------------------------------------------------------------------------------
# the pipeline and the report
# --------------------------------------------------------------------------------------------------

SIZE = 16


def _normalised(x01: torch.Tensor) -> torch.Tensor:
    from csvr.train.data import KINETICS_MEAN, KINETICS_STD

    return (x01 - torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1)) / torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1)


def _batches(seed: int, videos: int, batch: int = 2):
    """A batch factory: clips (B, 3, 6, 32, 32) normalised, frames 0..3 current, 4..5 'future'."""
    def factory():
        g = torch.Generator().manual_seed(seed)
        for start in range(0, videos, batch):
            b = min(batch, videos - start)
            base = torch.rand(b, 3, 1, 4, 4, generator=g).repeat_interleave(8, 3).repeat_interleave(8, 4)
            drift = torch.linspace(0, 0.2, 6).view(1, 1, 6, 1, 1)
            x01 = (base + drift).clamp(0, 1)
            yield {"clip": _normalised(x01[:, :, :4]), "future_clip": _normalised(x01[:, :, 4:]),
                   "label": torch.arange(start, start + b) % 2, "video_index": torch.arange(start, start + b)}
    return factory


def _pretext(batch):
    """A 'generator' that returns the real frames slightly darkened (a known, non-trivial error)."""
    real = torch.from_numpy(VB.clip_frames(batch["clip"], SIZE))
    fut = torch.from_numpy(VB.clip_frames(batch["future_clip"], SIZE))
    return {"real": real, "reconstructed": real * 0.8, "future_real": fut, "future_generated": fut * 0.7}


@pytest.mark.parametrize("gallery", [True, False])
def test_evaluate_run_scores_baselines_on_the_generator_frames(tmp_path, gallery):
    from csvr.evaluate.pipeline import EvalComponents, evaluate_run
    from csvr.evaluate.metrics_io import load_metrics

    test, train = _batches(0, 6), _batches(1, 8)
    feats = (lambda b: b["clip"].mean(dim=(2, 3, 4))) if gallery else None
    comps = EvalComponents(test_batches=test, train_batches=train, features=feats, pretext=_pretext)
    cfg = VB.VideoBaselineConfig(ae_steps=20, ae_batch=8, max_train_clips=6)
    written = evaluate_run(tmp_path / "eval", comps, ["a", "b"], video_baselines=cfg)
    m = load_metrics(written["metrics"])
    gen = m["pretext"]["generation"]
    bl = gen["baselines"]

    # reference: every test clip's frames, the mean frame of the first 6 train clips, computed directly
    real = np.concatenate([VB.clip_frames(b["clip"], SIZE) for b in test()])
    fut = np.concatenate([VB.clip_frames(b["future_clip"], SIZE) for b in test()])
    tr = np.concatenate([VB.clip_frames(b["clip"], SIZE) for b in train()])[:6]
    mean = tr.reshape(-1, SIZE, SIZE, 3).astype(np.float64).mean(axis=0)
    assert gen["psnr"] == pytest.approx(M.psnr(real * 0.8, real), rel=1e-9)
    assert gen["ssim_future"] == pytest.approx(M.ssim(fut * 0.7, fut), rel=1e-9)
    rec, pred = bl["reconstruction"], bl["prediction"]
    assert rec["mean_frame"]["psnr"] == pytest.approx(M.psnr(np.broadcast_to(mean, real.shape), real), rel=1e-6)
    assert pred["mean_frame"]["ssim"] == pytest.approx(M.ssim(np.broadcast_to(mean, fut.shape), fut), rel=1e-5)
    assert rec["first_frame"]["psnr"] == pytest.approx(
        M.psnr(np.broadcast_to(real[:, :1], real[:, 1:].shape), real[:, 1:]), rel=1e-9)
    assert pred["last_frame"]["psnr"] == pytest.approx(M.psnr(np.broadcast_to(real[:, -1:], fut.shape), fut), rel=1e-9)
    assert rec["autoencoder"]["num_frames"] == real.shape[0] * real.shape[1]
    assert bl["train"]["clips"] == 6 and bl["train"]["frames"] == 24
    assert ("gallery" in bl["train"]["source"]) == gallery
    assert bl["autoencoder"]["steps"] == 20 and bl["num_test_clips"] == {"reconstruction": 6, "prediction": 6}

    text = (tmp_path / "eval" / "report.md").read_text()
    assert "### Video generation against baselines" in text
    assert f"| **generator (ours)** | {gen['psnr']:.2f} | {gen['ssim']:.3f} | {gen['psnr_future']:.2f} |" in text
    assert f"| training mean frame (every frame) | {rec['mean_frame']['psnr']:.2f} |" in text
    assert f"| first frame repeated (scored on frames 2..T) | {rec['first_frame']['psnr']:.2f} |" in text
    assert f"| last observed frame repeated | – | – | {pred['last_frame']['psnr']:.2f} |" in text
    assert "| conv autoencoder (upper reference) |" in text and "20 Adam steps" in text


def test_evaluate_run_prefers_baseline_batches_and_can_be_switched_off(tmp_path):
    from csvr.evaluate.pipeline import EvalComponents, evaluate_run
    from csvr.evaluate.metrics_io import load_metrics

    calls = {"n": 0}
    base = _batches(2, 8)

    def counted():
        calls["n"] += 1
        return base()

    comps = EvalComponents(test_batches=_batches(0, 4), train_batches=_batches(1, 8),
                           features=lambda b: b["clip"].mean(dim=(2, 3, 4)), pretext=_pretext,
                           baseline_batches=counted)
    m = load_metrics(evaluate_run(tmp_path / "a", comps, ["a", "b"],
                                  video_baselines=VB.VideoBaselineConfig(ae_steps=0, max_train_clips=4))["metrics"])
    bl = m["pretext"]["generation"]["baselines"]
    assert calls["n"] == 1 and bl["train"]["source"] == "train split, generator clip recipe"
    assert bl["train"]["clips"] == 4 and "autoencoder" not in bl and "autoencoder" not in bl["reconstruction"]

    m = load_metrics(evaluate_run(tmp_path / "b", comps, ["a", "b"], video_baselines=None)["metrics"])
    assert "baselines" not in m["pretext"]["generation"] and calls["n"] == 1
    assert "against baselines" not in (tmp_path / "b" / "report.md").read_text()


def test_prediction_only_outputs_get_the_observed_frames(tmp_path):
    """A generator trained for prediction only has no `real`: the pipeline adds the current clip at the
    generator's size (`observed`) for the last-observed-frame baseline."""
    from csvr.evaluate.pipeline import EvalComponents, evaluate_run
    from csvr.evaluate.metrics_io import load_metrics

    def predict_only(batch):
        out = _pretext(batch)
        return {"future_real": out["future_real"], "future_generated": out["future_generated"]}

    test = _batches(0, 4)
    comps = EvalComponents(test_batches=test, pretext=predict_only)
    m = load_metrics(evaluate_run(tmp_path, comps, ["a", "b"])["metrics"])
    bl = m["pretext"]["generation"]["baselines"]
    assert set(bl["prediction"]) == {"last_frame"} and "reconstruction" not in bl
    real = np.concatenate([VB.clip_frames(b["clip"], SIZE) for b in test()])
    fut = np.concatenate([VB.clip_frames(b["future_clip"], SIZE) for b in test()])
    assert bl["prediction"]["last_frame"]["psnr"] == pytest.approx(
        M.psnr(np.broadcast_to(real[:, -1:], fut.shape), fut), rel=1e-9)
    text = (tmp_path / "report.md").read_text()
    assert "| **generator (ours)** | – | – |" in text and "| last observed frame repeated | – | – |" in text


def test_report_renders_baseline_rows_and_the_verdict(tmp_path):
    from csvr.evaluate.report import build_report

    gen = {"psnr": 14.5, "ssim": 0.41, "psnr_future": 15.25, "ssim_future": 0.40, "baselines": {
        "reconstruction": {"mean_frame": {"psnr": 14.8, "ssim": 0.45, "num_frames": 64},
                           "first_frame": {"psnr": 21.0, "ssim": 0.7, "num_frames": 56},
                           "autoencoder": {"psnr": 27.5, "ssim": 0.9, "num_frames": 64}},
        "prediction": {"mean_frame": {"psnr": 14.75, "ssim": 0.44, "num_frames": 64},
                       "last_frame": {"psnr": 18.0, "ssim": 0.6, "num_frames": 64}},
        "num_test_clips": {"reconstruction": 8, "prediction": 8},
        "train": {"clips": 32, "frames": 256, "max_clips": 256, "source": "train split, generator clip recipe"},
        "autoencoder": {"steps": 300, "batch": 32, "lr": 0.002, "seed": 0, "code": 8, "train_frames": 256,
                        "code_fraction": 1 / 6}}}
    run = tmp_path / "run"
    run.mkdir()
    build_report(run, metrics={"pretext": {"generation": gen}})
    text = (run / "report.md").read_text()
    assert "| reconstruction PSNR (dB) ↑ | 14.50 | – |" in text  # the Table II rows stay
    assert "| **generator (ours)** | 14.50 | 0.410 | 15.25 | 0.400 |" in text
    assert "| training mean frame (every frame) | 14.80 | 0.450 | 14.75 | 0.440 |" in text
    assert "| first frame repeated (scored on frames 2..T) | 21.00 | 0.700 | – | – |" in text
    assert "| last observed frame repeated | – | – | 18.00 | 0.600 |" in text
    assert "| conv autoencoder (upper reference) | 27.50 | 0.900 | – | – |" in text
    assert "reconstruction -0.30 dB over the mean frame (at or below it: nothing learned about the clip)" in text
    assert "prediction +0.50 dB over the mean frame;" not in text and "prediction +0.50 dB over the mean frame." in text
    assert "256 frames of 32 train clips, the first 256 of the pass (train split, generator clip recipe)" in text and "300 Adam steps" in text and "(17% of the pixel values)" in text


def test_train_batches_off_the_contract_only_skip_the_train_baselines(caplog):
    tf = VB.TrainFrames(16)
    batches = [{"clip": torch.zeros(2, 4, 16, 16, 3)}]  # channels last: not the loader's clip
    assert list(tf.tap(batches)) == batches  # the pass it shares goes on
    assert tf.skipped and tf.num_clips == 0 and "not the loader's" in caplog.text
