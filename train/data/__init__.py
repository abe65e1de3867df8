"""Training input: stream CSVR samples from a `csvr-store/1` Zarr store with no video decoding.

`ClipDataset` / `EvalClipDataset` read unaugmented uint8 samples, `ShardLocalSampler` orders them
(shard-local, epoch-shuffled, split across ranks), `ClipAugment` augments batches on the device,
`ThreadedLoader` assembles batches in the main process (threads, reused buffers) instead of a DataLoader.
See docs/loader.md.
"""

from .augment import COCO_FLIP_PERM, KINETICS_MEAN, KINETICS_STD, POSE_NORMS, ClipAugment, make_augment, normalize_person_poses
from .dataset import ClipDataset, EvalClipDataset, SampleBatch, collate_samples, sample_seed
from .loading import loader_generator, make_loader
from .sampler import ShardLocalSampler
from .sampling import ClipSpec
from .store import SCHEMA, StoreError, StoreReadError, StoreReader, open_group
from .threaded import ThreadedLoader

__all__ = [
    "COCO_FLIP_PERM", "KINETICS_MEAN", "KINETICS_STD", "POSE_NORMS", "SCHEMA", "ClipAugment", "ClipDataset", "ClipSpec",
    "EvalClipDataset", "SampleBatch", "ShardLocalSampler", "StoreError", "StoreReadError", "StoreReader", "collate_samples", "loader_generator", "make_augment", "make_loader", "normalize_person_poses", "open_group", "sample_seed",
    "ThreadedLoader",
]
