"""Backbone registry: V-Network 3D CNNs (C3D, R3D-18, R(2+1)D-18, S3D) and the I-Network R2D-10.

Every backbone is built by name with :func:`build_backbone` and exposes one API (timm-style), so the
branches and the fine-tuning network never special-case a backbone:

``feature_dim``, ``forward_features(x)`` (last feature map), ``forward_pooled(x)`` (global average pool,
(B, feature_dim)), ``forward_head(pooled)`` (logits; identity when ``num_classes == 0``),
``reset_head(num_classes, dropout)`` and ``forward(x) == forward_head(forward_pooled(x))``.

Every builder takes ``width``, a channel multiplier (1.0 = the published network; 0.25 gives the
CPU-sized networks of the tiny configs, ~16x fewer FLOPs). At width 1 the torchvision-based networks
are torchvision's own (same modules, same state-dict keys); S3D supports width 1 only.

Video input is (B, 3, T, H, W); the I-Network takes images (B, 3, H, W). torchvision definitions are
used where they work at 16x112x112 (R3D-18, R(2+1)D-18, and S3D's feature trunk, whose fixed 2x7x7
average pool only fits 224x224 and is replaced here by global average pooling). C3D (no torchvision
definition) is written here after Tran et al. 2015 with batch norm, as in VCOP/DCM-style SSL code.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from csvr.torchvision_compat import import_torchvision

__all__ = ["Backbone", "BACKBONES", "build_backbone", "register_backbone", "C3D"]


class Backbone(nn.Module):
    """Common API: a trunk producing a feature map, global average pooling and a (reset-able) head."""

    #: number of spatial(-temporal) dims of the expected input after the channel axis (3 video, 2 image)
    input_dims: int = 3

    def __init__(self, trunk: nn.Module, feature_dim: int, num_classes: int = 0, dropout: float = 0.0):
        super().__init__()
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.num_classes = 0
        self.head: nn.Module = nn.Identity()
        self.reset_head(num_classes, dropout)

    def _check(self, x: torch.Tensor) -> None:
        want = self.input_dims + 2
        if x.dim() != want or x.shape[1] != 3:
            layout = "(B, 3, T, H, W)" if self.input_dims == 3 else "(B, 3, H, W)"
            raise ValueError(f"{type(self).__name__} expects input {layout}, got shape {tuple(x.shape)}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map: (B, C, T', H', W') for video backbones, (B, C, H', W') for images."""
        self._check(x)
        return self.trunk(x)

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pooled features (B, feature_dim)."""
        f = self.forward_features(x)
        return f.flatten(2).mean(dim=2)

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits from pooled features; the identity when the head was built with ``num_classes=0``."""
        return self.head(pooled)

    def reset_head(self, num_classes: int, dropout: float = 0.0) -> None:
        """Replace the classifier by dropout + a fresh linear layer (``num_classes=0``: no head)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        if num_classes == 0:
            self.head = nn.Identity()
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.feature_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_pooled(x))


BACKBONES: dict[str, Callable[..., Backbone]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Decorator adding a builder ``fn(num_classes=0, **kw) -> Backbone`` to :data:`BACKBONES`."""

    def deco(fn: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in BACKBONES:
            raise ValueError(f"backbone {name!r} registered twice")
        BACKBONES[name] = fn
        return fn

    return deco


def build_backbone(name: str, num_classes: int = 0, **kwargs) -> Backbone:
    """Build a backbone by registry name (see :data:`BACKBONES`)."""
    try:
        builder = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}") from None
    return builder(num_classes=num_classes, **kwargs)


# ------------------------------------------------------------------------------------------ width
def _ch(channels: int, width: float) -> int:
    """A layer's channel count at the given width multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


def _check_width(width: float, name: str, supported: bool = True) -> None:
    if not width > 0:
        raise ValueError(f"backbone {name!r}: width must be > 0, got {width}")
    if not supported and width != 1.0:
        raise ValueError(f"backbone {name!r} supports width 1.0 only, got {width}")


# --------------------------------------------------------------------------------------------- C3D
def _c3d_block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]


class C3D(nn.Sequential):
    """C3D conv1..conv5b (Tran et al. 2015) with batch norm; 27.7M conv parameters at width 1.

    pool5 and fc6/fc7 are omitted: the representation is the global average of conv5b (as in the
    SSL literature that fine-tunes C3D with a fresh linear layer). Pools: (1,2,2) then (2,2,2) x3.
    """

    def __init__(self, width: float = 1.0) -> None:
        c64, c128, c256, c512 = (_ch(c, width) for c in (64, 128, 256, 512))
        layers: list[nn.Module] = []
        layers += _c3d_block(3, c64) + [nn.MaxPool3d((1, 2, 2), (1, 2, 2))]
        layers += _c3d_block(c64, c128) + [nn.MaxPool3d(2, 2)]
        layers += _c3d_block(c128, c256) + _c3d_block(c256, c256) + [nn.MaxPool3d(2, 2)]
        layers += _c3d_block(c256, c512) + _c3d_block(c512, c512) + [nn.MaxPool3d(2, 2)]
        layers += _c3d_block(c512, c512) + _c3d_block(c512, c512)
        super().__init__(*layers)
        self.feature_dim = c512


@register_backbone("c3d")
def c3d(num_classes: int = 0, dropout: float = 0.0, width: float = 1.0) -> Backbone:
    """C3D with batch norm, features 512-d at width 1 (global average of conv5b)."""
    _check_width(width, "c3d")
    trunk = C3D(width)
    return Backbone(trunk, trunk.feature_dim, num_classes, dropout)


# ------------------------------------------------------------------------------ torchvision video
class _VideoResNetTrunk(nn.Module):
    """torchvision VideoResNet without its pooling and fc: stem -> layer1..layer4."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.stem, self.layer1, self.layer2 = net.stem, net.layer1, net.layer2
        self.layer3, self.layer4 = net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


def _video_resnet(kind: str, width: float) -> nn.Module:
    """torchvision's R3D-18 / R(2+1)D-18 with every stage's channels scaled by `width`."""
    vr = import_torchvision().models.video.resnet
    if width == 1.0:
        return (vr.r3d_18 if kind == "r3d" else vr.r2plus1d_18)(weights=None)
    c64 = _ch(64, width)
    if kind == "r3d":
        conv, stem = vr.Conv3DSimple, lambda: nn.Sequential(
            nn.Conv3d(3, c64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False), nn.BatchNorm3d(c64), nn.ReLU(inplace=True))
    else:
        c45 = _ch(45, width)
        conv, stem = vr.Conv2Plus1D, lambda: nn.Sequential(
            nn.Conv3d(3, c45, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), nn.BatchNorm3d(c45), nn.ReLU(inplace=True),
            nn.Conv3d(c45, c64, (3, 1, 1), (1, 1, 1), (1, 0, 0), bias=False), nn.BatchNorm3d(c64), nn.ReLU(inplace=True))

    class Scaled(vr.VideoResNet):
        def _make_layer(self, block, conv_builder, planes, blocks, stride=1):  # noqa: ANN001
            if planes == 64:
                self.inplanes = c64  # the stem's output
            return super()._make_layer(block, conv_builder, _ch(planes, width), blocks, stride)

    return Scaled(vr.BasicBlock, [conv] * 4, [2, 2, 2, 2], stem)


@register_backbone("r3d_18")
def r3d_18(num_classes: int = 0, dropout: float = 0.0, width: float = 1.0) -> Backbone:
    """torchvision R3D-18 (random init), features 512-d at width 1."""
    _check_width(width, "r3d_18")
    return Backbone(_VideoResNetTrunk(_video_resnet("r3d", width)), _ch(512, width), num_classes, dropout)


@register_backbone("r2plus1d_18")
def r2plus1d_18(num_classes: int = 0, dropout: float = 0.0, width: float = 1.0) -> Backbone:
    """torchvision R(2+1)D-18 (random init, parameter-matched mid channels), features 512-d at width 1."""
    _check_width(width, "r2plus1d_18")
    return Backbone(_VideoResNetTrunk(_video_resnet("r2plus1d", width)), _ch(512, width), num_classes, dropout)


@register_backbone("s3d")
def s3d(num_classes: int = 0, dropout: float = 0.0, width: float = 1.0) -> Backbone:
    """torchvision S3D feature trunk with global average pooling (works at any size >= 32), 1024-d."""
    _check_width(width, "s3d", supported=False)
    tv = import_torchvision()
    return Backbone(tv.models.video.s3d(weights=None).features, 1024, num_classes, dropout)


# --------------------------------------------------------------------------------- I-Network
class _ImageBackbone(Backbone):
    input_dims = 2


class _ResNet2DTrunk(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


@register_backbone("r2d_10")
def r2d_10(num_classes: int = 0, dropout: float = 0.0, width: float = 1.0) -> Backbone:
    """2D ResNet-10 (torchvision ResNet, one BasicBlock per stage) for I-frames, features 512-d at width 1."""
    _check_width(width, "r2d_10")
    resnet = import_torchvision().models.resnet
    c64 = _ch(64, width)

    class Scaled(resnet.ResNet):
        def _make_layer(self, block, planes, blocks, stride=1, dilate=False):  # noqa: ANN001
            if planes == 64:
                self.inplanes = c64
            return super()._make_layer(block, _ch(planes, width), blocks, stride, dilate)

    net = Scaled(resnet.BasicBlock, [1, 1, 1, 1])
    if c64 != 64:  # the stem was built before the first stage: rebuild it at the scaled width
        net.conv1 = nn.Conv2d(3, c64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.bn1 = nn.BatchNorm2d(c64)
    return _ImageBackbone(_ResNet2DTrunk(net), _ch(512, width), num_classes, dropout)
