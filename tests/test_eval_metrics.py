"""Evaluation metrics on hand-made predictions and features with known answers."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from csvr.evaluate import metrics as M

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------ recognition
def test_top1_known_values():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    labels = np.array([0, 2, 2, 1])
    assert M.top1_accuracy(scores, labels) == pytest.approx(0.5)
    # torch input gives the same
    assert M.top1_accuracy(torch.tensor(scores), torch.tensor(labels)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="length mismatch"):
        M.top1_accuracy(scores, labels[:3])


def test_video_level_averages_clips_per_video():
    # video "a" (label 0): 3 clips, 2 of them argmax class 1 by a hair, one strongly class 0
    # -> clip-level 1/3 correct, video-level correct after averaging.
    # video "b" (label 1): 2 clips, both correct.
    scores = np.array([
        [0.45, 0.55], [0.45, 0.55], [0.95, 0.05],  # a
        [0.2, 0.8], [0.4, 0.6],                     # b
    ])
    labels = np.array([0, 0, 0, 1, 1])
    vids = np.array(["a", "a", "a", "b", "b"])
    assert M.top1_accuracy(scores, labels) == pytest.approx(3 / 5)
    ids, mean, vlab = M.video_level_scores(scores, labels, vids)
    assert M.top1_accuracy(mean, vlab) == pytest.approx(1.0)
    assert ids.tolist() == ["a", "b"]
    np.testing.assert_allclose(mean, [[0.6166666, 0.3833333], [0.3, 0.7]], atol=1e-6)
    assert vlab.tolist() == [0, 1]


def test_video_level_interleaved_clips_and_first_appearance_order():
    scores = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    vids = np.array([7, 3, 7, 3])
    ids, mean = M.group_mean(scores, vids)
    assert ids.tolist() == [7, 3]
    np.testing.assert_allclose(mean, [[0.0, 1.0], [1.0, 0.0]])


def test_video_level_rejects_inconsistent_labels():
    with pytest.raises(ValueError, match="different labels"):
        M.video_level_scores(np.eye(2), np.array([0, 1]), np.array([5, 5]))


def test_confusion_matrix_and_per_class_accuracy():
    y_true = np.array([0, 0, 1, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 2])
    cm = M.confusion_matrix(y_true, y_pred, 4)
    expected = np.zeros((4, 4), int)
    expected[0, 0] = 1
    expected[0, 1] = 1
    expected[1, 1] = 2
    expected[1, 0] = 1
    expected[2, 2] = 1
    np.testing.assert_array_equal(cm, expected)
    acc = M.per_class_accuracy(y_true, y_pred, 4)
    np.testing.assert_allclose(acc[:3], [0.5, 2 / 3, 1.0])
    assert math.isnan(acc[3])  # class 3 never occurs
    with pytest.raises(ValueError, match="outside"):
        M.confusion_matrix(y_true, y_pred, 2)


# --------------------------------------------------------------------------------------- retrieval
def _retrieval_case():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    g_labels = np.array([0, 1, 1, 2])
    # q0 (label 1): similarities g0 .995, g2 .77, g1 .0995, g3 -.995 -> first hit at rank 2
    # q1 (label 2): nearest is g3 -> hit at rank 1
    # q2 (label 3): no gallery video of its class -> never a hit
    queries = np.array([[1.0, 0.1], [-1.0, 0.05], [0.0, -1.0]])
    q_labels = np.array([1, 2, 3])
    return queries, q_labels, gallery, g_labels


def test_nearest_neighbours_order_and_cosine():
    q, _, g, _ = _retrieval_case()
    idx, sims = M.nearest_neighbours(q, g, 4)
    assert idx[0].tolist() == [0, 2, 1, 3]
    assert idx[1, 0] == 3
    assert sims[0, 0] == pytest.approx(1 / math.sqrt(1.01))
    # cosine: scaling features does not change anything
    idx2, _ = M.nearest_neighbours(10 * q, 0.1 * g, 4)
    np.testing.assert_array_equal(idx, idx2)


def test_recall_at_k_exact(caplog):
    q, ql, g, gl = _retrieval_case()
    r = M.retrieval_recall_at_k(q, ql, g, gl, ks=(1, 2, 3))
    assert r == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: pytest.approx(2 / 3)}
    with caplog.at_level(logging.WARNING):
        r = M.retrieval_recall_at_k(q, ql, g, gl)  # default ks 1,5,10,20 > 4 gallery videos
    assert r[1] == pytest.approx(1 / 3) and r[5] == r[20] == pytest.approx(2 / 3)
    assert "clipped" in caplog.text


def test_recall_at_k_matches_bruteforce_on_random_data():
    rng = np.random.default_rng(0)
    g, q = rng.normal(size=(30, 8)), rng.normal(size=(12, 8))
    gl, ql = rng.integers(0, 4, 30), rng.integers(0, 4, 12)
    r = M.retrieval_recall_at_k(q, ql, g, gl, ks=(1, 5, 10, 20))
    for k in (1, 5, 10, 20):
        hits = 0
        for i in range(len(q)):
            sims = [np.dot(q[i], g[j]) / np.linalg.norm(q[i]) / np.linalg.norm(g[j]) for j in range(len(g))]
            top = sorted(range(len(g)), key=lambda j: -sims[j])[:k]
            hits += any(gl[j] == ql[i] for j in top)
        assert r[k] == pytest.approx(hits / len(q))
    assert r[1] <= r[5] <= r[10] <= r[20]


def test_retrieval_rejects_bad_features():
    q, ql, g, gl = _retrieval_case()
    with pytest.raises(ValueError, match="NaN"):
        M.retrieval_recall_at_k(np.full_like(q, np.nan), ql, g, gl)
    with pytest.raises(ValueError, match="feature sizes differ"):
        M.retrieval_recall_at_k(q[:, :1], ql, g, gl)


# --------------------------------------------------------------------------------------- pretext
def test_context_matching_top1():
    v = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # one I-frame per clip: clip 2's I-frame is closer to clip 0's... let's compute
    f = np.array([[1.0, 0.1], [0.1, 1.0], [-1.0, 0.2]])
    # clip0 -> f0 (own) ok; clip1 -> f1 ok; clip2 (1,1) -> f0/f1 (both ~.77), f2 negative -> wrong
    assert M.context_matching_top1(v, f) == pytest.approx(2 / 3)
    # several I-frames per clip: clip 2 owns an I-frame close to (1,1)
    f2 = np.vstack([f, [[1.0, 0.95]]])
    owner = np.array([0, 1, 2, 2])
    assert M.context_matching_top1(v, f2, owner) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside"):
        M.context_matching_top1(v, f2, np.array([0, 1, 2, 3]))


def test_pose_mse_x100_with_mask():
    target = np.zeros((1, 2, 17, 2))
    pred = np.zeros((1, 2, 17, 2))
    pred[0, 0, 0] = [0.1, 0.2]  # observed joint: sq errors 0.01, 0.04
    pred[0, 1, 5] = [5.0, 5.0]  # unobserved joint: must not count
    mask = np.ones((1, 2, 17), bool)
    mask[0, 1, 5] = False
    n_obs = 2 * 17 - 1
    expected = 100 * (0.01 + 0.04) / (2 * n_obs)
    assert M.pose_mse_x100(pred, target, mask) == pytest.approx(expected)
    assert M.pose_mse_x100(torch.tensor(pred), torch.tensor(target), torch.tensor(mask)) == pytest.approx(expected)
    with pytest.raises(ValueError, match="no observed"):
        M.pose_mse_x100(pred, target, np.zeros_like(mask))


def test_inception_score_bounds():
    c = 5
    uniform = np.full((10, c), 1 / c)
    assert M.inception_score(uniform)[0] == pytest.approx(1.0)
    confident_spread = np.eye(c)[np.arange(10) % c]
    assert M.inception_score(confident_spread)[0] == pytest.approx(c, rel=1e-6)
    confident_one_class = np.eye(c)[np.zeros(10, int)]
    assert M.inception_score(confident_one_class)[0] == pytest.approx(1.0, rel=1e-6)
    mean, std = M.inception_score(confident_spread, splits=2)
    assert mean == pytest.approx(c, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)
    # hand-computed: p(y|x) rows [.5,.5,0..] and [0,0,1,0,0]; marginal [.25,.25,.5,0,0]
    p = np.zeros((2, c))
    p[0, :2] = 0.5
    p[1, 2] = 1.0
    kl0 = 2 * 0.5 * math.log(0.5 / 0.25)
    kl1 = math.log(1 / 0.5)
    assert M.inception_score(p)[0] == pytest.approx(math.exp((kl0 + kl1) / 2), rel=1e-6)
    with pytest.raises(ValueError, match="softmax"):
        M.inception_score(np.ones((3, c)))


def test_psnr_known_value():
    real = np.zeros((2, 4, 16, 16, 3))
    gen = real + 0.1  # mse 0.01 -> 20 dB
    assert M.psnr(gen, real) == pytest.approx(20.0)
    assert M.psnr(real, real) == pytest.approx(100.0)


def _naive_ssim(a: np.ndarray, b: np.ndarray, win: int = 11, sigma: float = 1.5) -> float:
    """Independent loop implementation of Gaussian-window SSIM on one (H, W) channel."""
    ax = np.arange(win) - (win - 1) / 2
    g = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma**2))
    g /= g.sum()
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for i in range(a.shape[0] - win + 1):
        for j in range(a.shape[1] - win + 1):
            pa, pb = a[i:i + win, j:j + win], b[i:i + win, j:j + win]
            ma, mb = (g * pa).sum(), (g * pb).sum()
            va, vb = (g * (pa - ma) ** 2).sum(), (g * (pb - mb) ** 2).sum()
            cov = (g * (pa - ma) * (pb - mb)).sum()
            vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_naive_loop():
    rng = np.random.default_rng(1)
    real = rng.random((14, 15, 1))
    gen = np.clip(real + rng.normal(0, 0.1, real.shape), 0, 1)
    assert M.ssim(gen, real) == pytest.approx(_naive_ssim(gen[..., 0], real[..., 0]), rel=1e-9)
    assert M.ssim(real, real) == pytest.approx(1.0)
    assert M.ssim(gen, real) < 0.95
    with pytest.raises(ValueError, match="smaller than"):
        M.ssim(real[:5], real[:5])


def test_context_matching_counts_same_video_other_clip():
    v = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # clips 0 and 1 are of the same video
    f = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert M.context_matching_top1(v, f) == pytest.approx(2 / 3)  # clip 1 matches clip 0's I-frame
    assert M.context_matching_top1(v, f, clip_video=np.array([7, 7, 8])) == pytest.approx(1.0)
