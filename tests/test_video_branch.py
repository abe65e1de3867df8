"""The video-generating branch (paper Sec. III-D, Eqs. 6-8) actually generates: step-by-step checks
on tiny synthetic clips that a broken generator cannot pass.

Data. `toy_clips`: deterministic 16-frame 32 x 32 clips, each with its own horizontal colour bands
(2-4 bands) and a coloured square moving at its own constant velocity (1.5 px / frame, bouncing off
the borders). Frames 0-7 are the current clip (reconstruction target), frames 8-15 the future clip
(prediction target). Values are in [-1, 1], the range of `train.steps.video_target`; every clip
passes through the production `video_target` (Kinetics normalisation undone, clamped, scaled).

Conditioning. f_i = AdaIN(f_s, f_d) through the real integration layer
(`train.models.integration.AdaINIntegration`, trained with the generator as in the video stage), with
f_s and f_d *fixed functions of the current clip* standing in for the encoders: f_s a fixed random
projection of the clip's mean frame (static content), f_d a fixed random projection of its frame
differences (motion). They are distinct per clip and carry the current clip's appearance and motion
but nothing about the future, so they test exactly what the generator has to do -- turn a code into
the right video -- without paying for a V-Network / pose encoder on the CPU. (The encoders' ability to
produce informative codes is a separate question, tested elsewhere.)

Generator. The real `VideoGenerator` at configs/pretrain/tiny.yaml's sizes (C = 64, 8 frames,
32 x 32, noise 16, frame latent 64, 64 -> 8 channels), noise z drawn afresh at every step as in
training, evaluated in eval mode (BN running statistics) with fresh noise.

Measured on this CPU (2 cores, torch.set_num_threads(1)); thresholds sit below with margin:

| check | measured | threshold | baseline(s) |
|---|---|---|---|
| L2 only, 6 clips, Adam 3e-3, 150 steps | 28.4 dB (250 steps: 29.3) | >= 25 dB | mean frame 13.5, first frame repeated 29.5 |
| ... f_i shuffled across the batch | 9.4 dB | <= 16 dB and >= 8 dB below | |
| prediction (future clip), same recipe, 150 steps | 27.9 dB (250 steps: 30.3) | >= last frame + 3 dB | last frame repeated 19.8 |
| critic on (`video_losses`, WGAN-GP + OSGAN), 4 clips, Adam 1e-3 (G and D), 100 steps, video_l2_weight 100 | 26.1 dB (150 steps: 26.9) | >= 22 dB | same at video_l2_weight 1 (tiny.yaml): 12.1 dB |

With the generator's input replaced by zeros (f_i and z), the fitting, critic and prediction tests
fail (measured: see docs/models.md, "Video branch").
"""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch

from csvr.evaluate import metrics as M
from csvr.train.config import LossConfig
from csvr.train.data import KINETICS_MEAN, KINETICS_STD
from csvr.train.models.integration import AdaINIntegration
from csvr.train.models.video_gen import VideoDiscriminator, VideoGenerator
from csvr.train import losses as L
from csvr.train.steps import video_losses, video_target

torch.set_num_threads(1)

C, T, SIZE, NOISE = 64, 8, 32, 16
GEN_KW = dict(cond_dim=C, size=SIZE, noise_dim=NOISE, frame_latent=64, channels=64, min_channels=8)  # tiny.yaml
N_CLIPS = 6
# pix2pix-style weight of the pixel term against the WGAN-GP critic (see docs/models.md, "Video branch")
VIDEO_L2_WEIGHT = 100.0


# ----------------------------------------------------------------------------------------- data
def toy_clips(n: int = N_CLIPS, frames: int = 2 * T, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """(n, 3, frames, size, size) in [-1, 1]: per-clip colour bands + a square moving at constant velocity."""
    g = torch.Generator().manual_seed(seed)
    vids = torch.empty(n, 3, frames, size, size)
    ys = torch.arange(size).view(size, 1).expand(size, size)
    xs = torch.arange(size).view(1, size).expand(size, size)
    for i in range(n):
        nb = 2 + i % 3
        cols = torch.rand(nb, 3, generator=g) * 1.6 - 0.8
        bg = cols[ys * nb // size].permute(2, 0, 1)
        sq = 6 + i % 3
        colour = torch.rand(3, generator=g) * 0.4 + 0.6
        colour = torch.where(torch.rand(3, generator=g) > 0.5, colour, -colour)
        x0, y0 = (float(v) for v in torch.randint(2, size - sq - 2, (2,), generator=g))
        ang = 2 * math.pi * (i + 0.5) / n
        vx, vy = 1.5 * math.cos(ang), 1.5 * math.sin(ang)
        span = size - sq
        for t in range(frames):
            def bounce(p, v):
                q = (p + v * t) % (2 * span)
                return q if q <= span else 2 * span - q
            x, y = round(bounce(x0, vx)), round(bounce(y0, vy))
            m = ((xs >= x) & (xs < x + sq) & (ys >= y) & (ys < y + sq)).float()
            vids[i, :, t] = bg * (1 - m) + colour.view(3, 1, 1) * m
    return vids


def normalise(v: torch.Tensor) -> torch.Tensor:
    """[-1, 1] video -> the loader's Kinetics-normalised clip (what `video_target` undoes)."""
    mean = torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1)
    return ((v + 1) / 2 - mean) / std


def clip_codes(cur: torch.Tensor, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Stand-ins for f_s, f_d: fixed random projections of the current clip's mean frame / frame differences."""
    g = torch.Generator().manual_seed(seed)
    s_in = cur.mean(dim=2).flatten(1)
    d_in = (cur[:, :, 1:] - cur[:, :, :-1]).flatten(1)
    f_s = s_in @ torch.randn(s_in.shape[1], C, generator=g) / math.sqrt(s_in.shape[1])
    f_d = d_in @ torch.randn(d_in.shape[1], C, generator=g) / math.sqrt(d_in.shape[1]) * 10
    return f_s, f_d


def psnr(fake: torch.Tensor, real: torch.Tensor) -> float:
    """The demo's metric (`evaluate.metrics.psnr`: per frame on [0, 1], mean) on (B, 3, T, H, W) in [-1, 1]."""
    def frames(x):
        return ((x.detach().float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1).numpy().astype(np.float64)
    return M.psnr(frames(fake), frames(real))


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(0)
    full = toy_clips()
    batch = {"clip": normalise(full[:, :, :T]), "future_clip": normalise(full[:, :, T:])}
    cur, fut = video_target(batch["clip"], SIZE), video_target(batch["future_clip"], SIZE)
    f_s, f_d = clip_codes(cur)
    return types.SimpleNamespace(batch=batch, cur=cur, fut=fut, f_s=f_s, f_d=f_d)


def _fit_l2(target: torch.Tensor, f_s, f_d, steps: int, lr: float = 3e-3, seed: int = 0):
    """Train AdaIN + G on L2 only (no critic); returns (integration, generator) in eval mode."""
    torch.manual_seed(seed)
    integ, gen = AdaINIntegration(C), VideoGenerator(frames=target.shape[2], **GEN_KW)
    opt = torch.optim.Adam([*integ.parameters(), *gen.parameters()], lr=lr, betas=(0.5, 0.999))
    for _ in range(steps):
        loss = L.video_l2(gen(integ(f_s, f_d)), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return integ.eval(), gen.eval()


@torch.no_grad()
def _eval(integ, gen, f_s, f_d, target, perm=None) -> float:
    torch.manual_seed(123)
    f_i = integ(f_s, f_d)
    if perm is not None:
        f_i = f_i[perm]
    return psnr(gen(f_i), target)


@pytest.fixture(scope="module")
def fitted(data):
    return _fit_l2(data.cur, data.f_s, data.f_d, steps=150)


# ---------------------------------------------------------------------------------------- tests
def test_baselines_are_what_the_docs_say(data):
    """The trivial baselines the thresholds are compared with (mean frame, first / last frame repeated)."""
    cur, fut = data.cur, data.fut
    mean_frame = cur.mean(dim=(0, 2), keepdim=True).expand_as(cur)
    assert psnr(mean_frame, cur) < 15
    assert psnr(cur[:, :, :1].expand_as(cur), cur) < 30
    assert psnr(cur[:, :, -1:].expand_as(fut), fut) < 21
    assert len({tuple(x.tolist()) for x in data.f_s.round(decimals=4)}) == N_CLIPS  # distinct codes


def test_reconstruction_overfits_one_batch_with_l2(data, fitted):
    integ, gen = fitted
    assert _eval(integ, gen, data.f_s, data.f_d, data.cur) >= 25.0


def test_conditioning_matters(data, fitted):
    """f_i shuffled across the batch at test time: the videos belong to other clips, PSNR collapses."""
    integ, gen = fitted
    good = _eval(integ, gen, data.f_s, data.f_d, data.cur)
    perm = torch.roll(torch.arange(N_CLIPS), 1)
    shuffled = _eval(integ, gen, data.f_s, data.f_d, data.cur, perm=perm)
    assert shuffled <= 16.0 and good - shuffled >= 8.0, (good, shuffled)


def test_prediction_beats_repeating_the_last_frame(data):
    """G_v^p from the current clip's code: the future clip, better than the last observed frame repeated."""
    integ, gen = _fit_l2(data.fut, data.f_s, data.f_d, steps=150, seed=1)
    got = _eval(integ, gen, data.f_s, data.f_d, data.fut)
    baseline = psnr(data.cur[:, :, -1:].expand_as(data.fut), data.fut)
    assert got >= baseline + 3.0, (got, baseline)


def test_reconstruction_converges_with_the_critic_on(data):
    """L2 + WGAN-GP through the production `video_losses` (one-stage OSGAN update, GP, drift): the critic
    does not drown the pixel term (at VIDEO_L2_WEIGHT; see docs/models.md for weight 1)."""
    torch.manual_seed(0)
    b = 4
    batch = {k: v[:b] for k, v in data.batch.items()}
    f_s, f_d = data.f_s[:b], data.f_d[:b]
    net = types.SimpleNamespace(integration=AdaINIntegration(C), video_gen_r=VideoGenerator(frames=T, **GEN_KW),
                                video_disc_r=VideoDiscriminator(width=4), cfg=types.SimpleNamespace(video_size=SIZE))
    net.video_gen_p, net.video_disc_p = None, None
    net.integrate = net.integration
    cfg = LossConfig(video_targets=["reconstruct"], video_l2_weight=VIDEO_L2_WEIGHT)
    gen_params = [*net.integration.parameters(), *net.video_gen_r.parameters()]
    opt = torch.optim.Adam([{"params": gen_params}, {"params": net.video_disc_r.parameters()}],
                           lr=1e-3, betas=(0.5, 0.999))
    for _ in range(100):
        out = video_losses(net, batch, cfg, f_s, f_d)
        opt.zero_grad()
        out["_backward"].backward()
        opt.step()
    assert abs(out["video_r_wdist"].item()) < 50  # the critic took part and stayed bounded
    net.integration.eval(), net.video_gen_r.eval()
    assert _eval(net.integration, net.video_gen_r, f_s, f_d, data.cur[:b]) >= 22.0
