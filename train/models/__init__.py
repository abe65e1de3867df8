"""CSVR networks: backbone registry and the branch modules (see docs/models.md).

The assembled network is `train.system.CSVRModel`; the fine-tuning network is `train.finetune.DownstreamNet`.
"""

from csvr.train.models.backbones import BACKBONES, Backbone, build_backbone, register_backbone
from csvr.train.models.context import MLPHead
from csvr.train.models.integration import AdaINIntegration, ConcatIntegration, build_integration
from csvr.train.models.pose import MotionAligner, PoseDiscriminator, PoseEncoder, PoseGenerator
from csvr.train.models.video_gen import VideoDiscriminator, VideoGenerator

__all__ = [
    "BACKBONES",
    "Backbone",
    "build_backbone",
    "register_backbone",
    "MLPHead",
    "PoseEncoder",
    "PoseGenerator",
    "PoseDiscriminator",
    "MotionAligner",
    "AdaINIntegration",
    "ConcatIntegration",
    "build_integration",
    "VideoGenerator",
    "VideoDiscriminator",
]
