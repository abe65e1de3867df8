"""Evaluation on a real (tiny) synthetic store: store side, eval loader and the pipeline with a toy model."""

from __future__ import annotations

import pytest
import torch

from csvr.evaluate.pipeline import EvalComponents, evaluate_run, video_id_map
from csvr.evaluate.metrics_io import load_metrics
from csvr.evaluate.components import StoreInfo, eval_batches

torch.set_num_threads(1)


@pytest.mark.slow
def test_pipeline_on_synthetic_store(synthetic_store, synthetic_root, tmp_path):
    from csvr.train.data import ClipSpec

    info = StoreInfo(synthetic_store)
    assert len(info.classes) == 4 and len(info.ids) == 16
    groups = info.class_groups(synthetic_root / "synthetic.json")
    assert set(groups) == set(info.classes) and set(groups.values()) <= {"motion", "context", "both"}
    frame = info.middle_frame("test", 0)
    assert frame.ndim == 3 and frame.shape[-1] == 3 and str(frame.dtype) == "uint8"

    spec = ClipSpec(frames=8, stride=2, future_frames=4, max_iframes=2)
    test = eval_batches(synthetic_store, "test", num_clips=2, batch_size=8, spec=spec)
    train = eval_batches(synthetic_store, "train", num_clips=2, batch_size=8, spec=spec)
    batch = next(iter(test()))
    assert batch["clip"].shape[1:] == (3, 8, 112, 112) and batch["clip"].dtype == torch.float32

    # toy "model": per-channel mean and std of the clip (colour statistics separate the scenes)
    def feats(batch) -> torch.Tensor:
        x = batch["clip"]
        return torch.cat([x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4))], dim=1)

    comps = EvalComponents(test_batches=test, train_batches=train, features=feats,
                           video_frame=info.middle_frame, video_ids=video_id_map(info.ids))
    written = evaluate_run(tmp_path / "eval", comps, info.classes, groups, run_info={"dataset": "synthetic"})
    m = load_metrics(written["metrics"])
    r = m["retrieval"]["recall"]
    assert m["retrieval"]["num_queries"] + m["retrieval"]["num_gallery"] == 16
    assert 0.0 <= r["1"] <= r["5"] <= r["10"] <= 1.0
    assert written["retrieval_examples"].is_file()
    print("toy colour-statistics retrieval on the synthetic store:", r)
