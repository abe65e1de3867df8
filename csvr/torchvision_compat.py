"""Make `import torchvision` work with the CPU torch wheel.

The PyPI torchvision 0.28.0 wheel is a CUDA build; with CPU torch its compiled ops do not load and the
import fails with `operator torchvision::nms does not exist` (see ../shared/ENVIRONMENT.md). Defining the
two operator schemas (and a pure-Python CPU nms) before the first import fixes models and transforms.
Compiled ops such as roi_align stay unavailable; nothing in csvr uses them. On a CUDA machine with a
matching torch this is a no-op.
"""

from __future__ import annotations

import importlib
import sys

import torch

from csvr.boxes import nms

_LIB = None


def _nms(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression on (N, 4) xyxy boxes (csvr.boxes.nms); returns kept indices by score."""
    keep = nms(dets.detach().cpu().double().numpy(), scores.detach().cpu().double().numpy(), float(iou_threshold))
    return torch.from_numpy(keep)


def import_torchvision():
    """Import and return torchvision, registering the missing operator schemas first if needed."""
    global _LIB
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    try:
        torch.ops.torchvision.nms  # noqa: B018  (probe: exists when torchvision's C++ ops loaded)
        has_ops = True
    except (AttributeError, RuntimeError):
        has_ops = False
    if not has_ops and _LIB is None:
        _LIB = torch.library.Library("torchvision", "DEF")
        _LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIB.impl("nms", _nms, "CPU")
    try:
        return importlib.import_module("torchvision")
    except RuntimeError:
        if _LIB is None:
            raise
        sys.modules.pop("torchvision", None)
        return importlib.import_module("torchvision")
