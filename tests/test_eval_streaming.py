"""Evaluation in bounded memory: batches are streamed (per-video sums kept, clips dropped), the numbers
equal the keep-everything computation, and the defaults fit the machine (device auto, all cores,
default loader workers). Also: which pretraining stages an ablation row may reuse."""

from __future__ import annotations

import gc
import inspect
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from data_fakestore import FakeStoreSpec, FakeVideo, write_fake_store
from csvr.evaluate import metrics as M
from csvr.evaluate import paper

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 3
# the fine-tuning recipe shrunk to the fake store's 36x44 frames
FT = ("data.frames=4", "data.stride=1", "data.crop=32", "data.input_size=16", "data.num_workers=0")


def _store(tmp_path: Path, test_videos: int) -> Path:
    vids = [FakeVideo(12, i % NUM_CLASSES, "train") for i in range(3)]
    vids += [FakeVideo(12, i % NUM_CLASSES, "test") for i in range(test_videos)]
    return write_fake_store(tmp_path / f"store{test_videos}.zarr",
                            FakeStoreSpec(videos=vids, frame_size=(36, 44), shard_frames=16))


class BatchTracker:
    """Wraps batch factories; records, at every batch produced, how many earlier batches are still alive
    (weak references to their `clip` tensors) and their bytes."""

    def __init__(self) -> None:
        self.refs: list[weakref.ref] = []
        self.peak = 0            # most batches alive at once (the new one included)
        self.peak_bytes = 0
        self.produced = 0

    def alive(self) -> list[torch.Tensor]:
        gc.collect()
        return [t for t in (r() for r in self.refs) if t is not None]

    def wrap(self, factory):
        def batches():
            for b in factory():
                live = self.alive() + [b["clip"]]
                self.peak = max(self.peak, len(live))
                self.peak_bytes = max(self.peak_bytes, sum(t.nelement() * t.element_size() for t in live))
                del live  # the tracker itself must not keep batches alive
                self.refs.append(weakref.ref(b["clip"]))
                self.produced += 1
                yield b
        return batches


def _toy_net(clip: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Deterministic 'classifier': colour means and the mean pose, mixed into 3 logits."""
    w = torch.linspace(-1.0, 1.0, 5 * NUM_CLASSES).view(5, NUM_CLASSES)
    x = torch.cat([clip.mean(dim=(2, 3, 4)), pose.mean(dim=(1, 2))], dim=1)
    return x @ w


# --------------------------------------------------------------------------------------------------
# the streaming accumulators give exactly the numbers of the keep-everything functions
# --------------------------------------------------------------------------------------------------


def test_accumulators_equal_the_concatenated_computation_exactly():
    rng = np.random.default_rng(0)
    videos, clips = 37, 5
    vid = np.repeat(rng.permutation(videos), clips)
    vid = vid[rng.permutation(len(vid))]  # clips of a video spread over many batches
    labels_of = rng.integers(0, 7, videos)
    y = labels_of[vid]
    scores = rng.normal(size=(len(vid), 7)).astype(np.float32)
    feats = rng.normal(size=(len(vid), 33)).astype(np.float32)
    rec, fac = M.RecognitionAccumulator(7), M.VideoAccumulator()
    cut = np.sort(rng.choice(np.arange(1, len(vid)), 20, replace=False))
    for part in np.split(np.arange(len(vid)), cut):
        rec.add(scores[part], y[part], vid[part])
        fac.add(feats[part], vid[part], y[part])
    assert rec.clip_top1() == M.top1_accuracy(scores, y)
    ids, vs, vl = M.video_level_scores(scores, y, vid)
    rids, rvs, rvl = rec.video_scores()
    assert np.array_equal(ids, rids) and np.array_equal(vs, rvs) and np.array_equal(vl, rvl)  # bit-identical
    gids, gmean = M.group_mean(feats, vid)
    assert np.array_equal(gids, fac.ids()) and np.array_equal(gmean, fac.means())
    assert fac.counts().tolist() == [clips] * videos and rec.num_clips == len(vid)

    from csvr.evaluate.pipeline import recognition_metrics, recognition_section

    assert recognition_section(rec) == recognition_metrics(scores, y, vid, 7)
    with pytest.raises(ValueError, match="different labels"):
        M.RecognitionAccumulator(7).add(scores[:2], [0, 1], [4, 4])
    with pytest.raises(ValueError, match="classes"):
        M.RecognitionAccumulator(5).add(scores[:2], [0, 1], [4, 5])


# --------------------------------------------------------------------------------------------------
# peak memory does not grow with the number of test videos
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("test_videos", [3, 12])
def test_ablation_rows_stream_the_test_clips(test_videos, tmp_path, monkeypatch):
    """Two ablation rows evaluated on a store with N or 4N test videos: at most two clip batches are
    ever alive (the consumer's and the one being made) and none survives a row; each row streams the
    store again. The old `cached(...)` test clips kept every batch (peak = all of them)."""
    import csvr.evaluate.checkpoints as ck
    import csvr.evaluate.components as components
    import csvr.train.finetune as tf
    from csvr.evaluate.ablation_runner import RowRunner

    store = _store(tmp_path, test_videos)
    tracker = BatchTracker()
    real = components.eval_batches
    monkeypatch.setattr(components, "eval_batches", lambda *a, **k: tracker.wrap(real(*a, **k)))
    monkeypatch.setattr(tf, "finetune", lambda *a, **k: {})  # the training is not what is measured here
    monkeypatch.setattr(ck, "finetune_checkpoint", lambda run: Path(run) / "last.pt")
    monkeypatch.setattr(ck, "load_finetuned_network", lambda path, device="cpu": _toy_net)

    runner = RowRunner(store=store, pretrain_config=REPO / "configs/pretrain/tiny.yaml",
                       finetune_config=REPO / "configs/finetune/tiny.yaml", out_dir=tmp_path / "abl",
                       finetune_overrides=FT, num_clips=2, batch_size=2, num_workers=0, device="auto")
    scratch = paper.ablation_rows("I")[0]
    first = runner(scratch, tmp_path / "abl" / "a")
    assert tracker.alive() == []  # nothing of the test clips is kept once a row is scored
    second = runner(scratch, tmp_path / "abl" / "b")
    assert tracker.alive() == [] and first == second
    per_pass = test_videos * 2 // 2
    assert tracker.produced == 2 * per_pass  # read once per row, no cache
    assert tracker.peak <= 2, f"{tracker.peak} of {per_pass} batches alive at once"
    clip_bytes = 2 * 3 * 4 * 16 * 16 * 4  # batch 2, RGB, 4 frames, 16x16, float32
    assert tracker.peak_bytes <= 2 * clip_bytes


@pytest.mark.parametrize("test_videos", [3, 12])
def test_evaluate_run_streams_and_keeps_the_numbers(test_videos, tmp_path):
    """`evaluate_run` (recognition + retrieval) on N or 4N test videos: at most two batches alive at
    once in both the test and the gallery pass, and the metrics equal the keep-everything computation
    on the concatenated clip outputs."""
    from csvr.evaluate.features import read_features
    from csvr.evaluate.pipeline import EvalComponents, evaluate_run, recognition_metrics
    from csvr.evaluate.metrics_io import load_metrics
    from csvr.evaluate.components import eval_batches
    from csvr.train.data import ClipSpec

    store = _store(tmp_path, test_videos)
    kw = dict(num_clips=2, batch_size=2, device="cpu", num_workers=0, spec=ClipSpec(frames=4, stride=1), crop=32,
              input_size=16)
    tracker = BatchTracker()
    test, train = tracker.wrap(eval_batches(store, "test", **kw)), tracker.wrap(eval_batches(store, "train", **kw))

    def classify(b):
        return _toy_net(b["clip"], b["pose"][..., :2])

    def features(b):
        return torch.cat([b["clip"].mean(dim=(2, 3, 4)), b["clip"].std(dim=(2, 3, 4))], dim=1)

    comps = EvalComponents(test_batches=test, train_batches=train, classify=classify, features=features)
    written = evaluate_run(tmp_path / "eval", comps, [f"Class{i}" for i in range(NUM_CLASSES)])
    assert tracker.alive() == [] and tracker.produced == test_videos + 3
    assert tracker.peak <= 2, f"{tracker.peak} batches alive at once"

    # the keep-everything reference: every clip output of an untracked pass, concatenated
    s, f, y, v = [], [], [], []
    with torch.no_grad():
        for b in eval_batches(store, "test", **kw)():
            s.append(classify(b).numpy())
            f.append(features(b).numpy())
            y.append(b["label"].numpy())
            v.append(b["video_index"].numpy())
    s, f, y, v = map(np.concatenate, (s, f, y, v))
    m = load_metrics(written["metrics"])
    ref = recognition_metrics(s, y, v, NUM_CLASSES)
    assert m["recognition"] == ref  # the same numbers, to the last bit (JSON keeps float repr)
    ids, mean = M.group_mean(f.astype(np.float64), v)
    q = read_features(written["features"], "test")
    assert np.array_equal(q.features, mean.astype(np.float32))
    assert [int(i) for i in q.video_ids] == ids.tolist()


# --------------------------------------------------------------------------------------------------
# defaults that fit the machine
# --------------------------------------------------------------------------------------------------


def test_evaluate_defaults_are_auto_device_all_cores_default_workers(monkeypatch, tmp_path):
    import csvr.evaluate.pipeline as er
    from csvr.evaluate.cli import ablate, evaluate
    from csvr.evaluate.ablation_runner import RowRunner
    from csvr.evaluate.components import eval_batches, load_models, resolve_device
    from csvr.train.distributed import cores_per_process, default_loader_workers

    sig = inspect.signature(eval_batches).parameters
    assert sig["device"].default == "auto" and sig["num_workers"].default is None
    assert inspect.signature(load_models).parameters["device"].default == "auto"
    assert inspect.signature(er.evaluate_checkpoints).parameters["device"].default == "auto"
    assert RowRunner.__dataclass_fields__["device"].default == "auto"
    assert resolve_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"

    seen: dict = {}
    threads: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)

    def fake_eval(store, out_dir, **kw):
        seen.update(kw)
        return {"metrics": Path(out_dir) / "metrics.json", "report": Path(out_dir) / "report.md"}

    monkeypatch.setattr(er, "evaluate_checkpoints", fake_eval)
    store = tmp_path / "s.zarr"
    store.mkdir()
    base = ["run", "--store", str(store), "--finetune-run", str(store), "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(evaluate, base)
    assert res.exit_code == 0, res.output
    assert seen["device"] == resolve_device("auto") and threads[-1] == cores_per_process()
    assert seen["num_workers"] == default_loader_workers(None)
    res = CliRunner().invoke(evaluate, base + ["--device", "cpu", "--threads", "1", "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert seen["device"] == "cpu" and threads[-1] == 1 and seen["num_workers"] == 0
    for group, cmd in ((evaluate, "run"), (ablate, "run")):
        text = CliRunner().invoke(group, [cmd, "--help"]).output
        assert "--device" in text and "[default: auto]" in text and "--threads" in text and "--workers" in text


# --------------------------------------------------------------------------------------------------
# which stages an ablation row may reuse: the video stage starts from the context stage
# --------------------------------------------------------------------------------------------------


def test_stage_settings_follow_the_stage_order():
    from csvr.evaluate.ablation_runner import STAGE_ORDER, STAGE_SETTINGS, reusable_stages, stage_settings
    from csvr.train.config import PretrainConfig, load_config

    assert "context_loss" in STAGE_SETTINGS["video"] and STAGE_SETTINGS["pose"] == ()
    assert STAGE_SETTINGS["context"] == ("context_loss",)
    for cfg in (PretrainConfig(), load_config(PretrainConfig, REPO / "configs/pretrain/tiny.yaml")):
        init = {s.name: list(s.init_from) for s in cfg.stages}
        assert stage_settings(init) == STAGE_SETTINGS
        assert [s.name for s in cfg.stages] == list(STAGE_ORDER)
    # a video stage trained from the pose stage alone would not read the context loss
    assert "context_loss" not in stage_settings({"video": ["pose"], "joint": ["pose", "video"]})["video"]

    have = dict(paper.PRETRAIN_DEFAULTS)
    init = {"pose": [], "context": [], "video": ["pose", "context"], "joint": ["pose", "context", "video"]}
    done = set(STAGE_ORDER)
    every = list(STAGE_ORDER)
    assert reusable_stages(every, dict(have), have, done, init) == done
    assert reusable_stages(every, {**have, "video_targets": ["predict"]}, have, done, init) == {"pose", "context"}
    # another context loss: the context stage AND the video stage built on it train again
    assert reusable_stages(every, {**have, "context_loss": "l2"}, have, done, init) == {"pose"}
    # a row without the context stage cannot take the shared video stage (it started from context)
    assert reusable_stages(["pose", "video"], dict(have), have, done, init) == {"pose"}
    # every paper row names its stages in the trainer's order
    for table in ("I", "III", "IV", "V"):
        for row in paper.ablation_rows(table):
            st = row.pretrain.get("stages")
            if st:
                assert list(st) == [s for s in STAGE_ORDER if s in st], row.key
