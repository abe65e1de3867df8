"""Backbone registry: shapes, backward, parameter counts, head API, bad input."""

from __future__ import annotations

import pytest
import torch

from csvr.train.models import BACKBONES, build_backbone

torch.set_num_threads(1)

# Inference parameters without a head. torchvision values = its published totals minus the 400-class fc
# (r3d_18 33,371,472; r2plus1d_18 31,505,325; s3d 8,320,048 with a 1024x400 1x1x1 conv classifier).
KNOWN_PARAMS = {
    "r3d_18": 33_371_472 - (512 * 400 + 400),
    "r2plus1d_18": 31_505_325 - (512 * 400 + 400),
    "s3d": 8_320_048 - (1024 * 400 + 400),
}
FEATURE_DIM = {"c3d": 512, "r3d_18": 512, "r2plus1d_18": 512, "s3d": 1024, "r2d_10": 512}


def _c3d_params() -> int:
    """conv 3x3x3 (+bias) and BatchNorm (weight, bias) for each of the 8 C3D conv layers."""
    chans = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
    return sum(27 * i * o + o + 2 * o for i, o in chans)


def _r2d10_params() -> int:
    """ResNet-10: 7x7 stem + one BasicBlock per stage (+1x1 downsample when width changes), all BN."""
    total = 7 * 7 * 3 * 64 + 2 * 64
    cin = 64
    for w in (64, 128, 256, 512):
        total += 9 * cin * w + 2 * w + 9 * w * w + 2 * w
        if cin != w:
            total += cin * w + 2 * w
        cin = w
    return total


def _input(model, frames: int = 8, size: int = 32) -> torch.Tensor:
    return torch.randn(2, 3, size, size) if model.input_dims == 2 else torch.randn(2, 3, frames, size, size)


def test_registry_names():
    assert set(BACKBONES) == {"c3d", "r3d_18", "r2plus1d_18", "s3d", "r2d_10"}
    with pytest.raises(ValueError, match="unknown backbone 'nope'"):
        build_backbone("nope")


@pytest.mark.parametrize("name", sorted(FEATURE_DIM))
def test_backbone_api_shapes_backward(name):
    torch.manual_seed(0)
    model = build_backbone(name, num_classes=5)
    x = _input(model)
    pooled = model.forward_pooled(x)
    assert model.feature_dim == FEATURE_DIM[name]
    assert pooled.shape == (2, FEATURE_DIM[name])
    fmap = model.forward_features(x)
    assert fmap.shape[:2] == (2, FEATURE_DIM[name]) and fmap.dim() == x.dim()
    logits = model(x)
    assert logits.shape == (2, 5)
    torch.testing.assert_close(logits, model.forward_head(model.forward_pooled(x)))
    logits.square().sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    model.reset_head(3, dropout=0.3)
    assert model(x).shape == (2, 3)
    model.reset_head(0)
    assert model(x).shape == (2, FEATURE_DIM[name])


@pytest.mark.parametrize("name", sorted(FEATURE_DIM))
def test_parameter_counts(name):
    model = build_backbone(name)
    n = sum(p.numel() for p in model.parameters())
    expected = {"c3d": _c3d_params(), "r2d_10": _r2d10_params(), **KNOWN_PARAMS}[name]
    assert n == expected


def test_bad_input_message():
    model = build_backbone("r2d_10")
    with pytest.raises(ValueError, match=r"expects input \(B, 3, H, W\)"):
        model(torch.randn(2, 3, 4, 32, 32))
    with pytest.raises(ValueError, match="num_classes must be >= 0"):
        model.reset_head(-1)


def test_s3d_works_below_224():
    """torchvision's own s3d fails below 224 px (fixed 7x7 pool); the registry version must not."""
    model = build_backbone("s3d", num_classes=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 16, 112, 112)).shape == (1, 2)


def test_flop_count_matches_torchvision_metadata():
    """GMACs at 16x112x112 equal torchvision's published `_ops` (40.519 / 40.697): torchvision's
    "GFLOPS" are multiply-accumulates, as are (by the same numbers) the paper's Table IX values."""
    from csvr.train.models.summary import measure

    r21 = measure("r2plus1d_18")
    assert r21["gmacs"] == pytest.approx(40.519, abs=1e-3)
    assert r21["gflops"] == pytest.approx(2 * r21["gmacs"])
    assert r21["params_m"] * 1e6 == pytest.approx(KNOWN_PARAMS["r2plus1d_18"])
    assert measure("r3d_18")["gmacs"] == pytest.approx(40.697, abs=1e-3)


def test_summary_table_lists_paper_values():
    from csvr.train.models.summary import table

    rows = [{"backbone": "r2plus1d_18", "params_m": 31.3, "gflops": 81.0, "gmacs": 40.5, "input": [3, 16, 112, 112]},
            {"backbone": "csvr f_i (s3d, 101 classes)", "params_m": 9.0, "gflops": 9.0, "gmacs": 4.5, "input": [3, 16, 112, 112]}]
    lines = table(rows).splitlines()
    assert lines[2] == "| r2plus1d_18 | 3x16x112x112 | 31.30 | 81.0 | 40.5 | 15.4 | 40.4 |"
    assert "| 9.1 |" in lines[3]


@pytest.mark.parametrize("name", ["c3d", "r3d_18", "r2plus1d_18", "r2d_10"])
def test_width_scales_channels_and_keeps_the_layout(name):
    full, quarter = build_backbone(name), build_backbone(name, width=0.25)
    assert quarter.feature_dim == FEATURE_DIM[name] // 4
    x = _input(quarter)
    assert quarter.forward_pooled(x).shape == (2, FEATURE_DIM[name] // 4)
    # same modules (same state-dict keys), every conv ~4x fewer channels: ~16x fewer parameters
    assert quarter.state_dict().keys() == full.state_dict().keys()
    ratio = sum(p.numel() for p in full.parameters()) / sum(p.numel() for p in quarter.parameters())
    assert 13 < ratio < 17


def test_width_one_is_torchvisions_own_network():
    from csvr.torchvision_compat import import_torchvision

    ref = import_torchvision().models.video.r3d_18(weights=None).state_dict()
    own = build_backbone("r3d_18", width=1.0).trunk.state_dict()
    assert all(k in ref and ref[k].shape == v.shape for k, v in own.items())


def test_bad_width_is_refused():
    with pytest.raises(ValueError, match="'s3d' supports width 1.0 only"):
        build_backbone("s3d", width=0.5)
    with pytest.raises(ValueError, match="width must be > 0"):
        build_backbone("r3d_18", width=0.0)
