"""Synthetic action-video dataset generator (`csvr synth`): see docs/synthetic.md."""

from csvr.data_manifests.synthetic.generate import CLASS_POOL, ClassSpec, generate, plan_videos, select_classes

__all__ = ["CLASS_POOL", "ClassSpec", "generate", "plan_videos", "select_classes"]
