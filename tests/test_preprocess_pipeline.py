"""preprocess_dataset end to end on tiny videos: bad files, Dask worker counts, SIGKILL + resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from csvr.preprocess.pipeline import STAGING, preprocess_dataset
from csvr.preprocess.schema import FRAME_ARRAYS, IFRAME_ARRAYS, SCHEMA, VIDEO_COLUMNS, StoreError, open_store
from preprocess_testdata import add_bad_files, make_dataset

REPO = Path(__file__).resolve().parents[1]
ARRAYS = (*FRAME_ARRAYS, *IFRAME_ARRAYS, *(f"videos/{c}" for c in VIDEO_COLUMNS))


def assert_stores_equal(a: str, b: str) -> None:
    ga, gb = zarr.open_group(a, mode="r"), zarr.open_group(b, mode="r")
    for name in ARRAYS:
        xa, xb = ga[name][:], gb[name][:]
        assert xa.shape == xb.shape, name
        assert np.array_equal(np.asarray(xa, dtype=object if xa.dtype.kind == "T" else xa.dtype),
                              np.asarray(xb, dtype=object if xb.dtype.kind == "T" else xb.dtype)), name
    for k in ("schema", "dataset", "manifest_sha256", "options", "pose_model", "iframe_policy", "complete"):
        assert ga.attrs[k] == gb.attrs[k], k


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("pp_data")
    m = make_dataset(root, per_class=2)
    bad, m2 = add_bad_files(root, m)
    return root, m, bad, m2


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """The uninterrupted in-process run everything else is compared with."""
    _, _, _, m2 = dataset
    out = tmp_path_factory.mktemp("pp_ref") / "store.zarr"
    summary = preprocess_dataset(m2, out, pose="groundtruth", workers=0, shard_frames=32, progress=False)
    return out, summary


def test_store_content(dataset, reference):
    root, m, bad, m2 = dataset
    out, summary = reference
    g = open_store(str(out))
    assert g.attrs["schema"] == SCHEMA and g.attrs["complete"] is True
    assert g.attrs["iframe_policy"] == {"policy": "reencode", "gop": 12}
    assert g.attrs["frame_size"] == [128, 171]
    assert g.attrs["pose_model"]["name"] == "groundtruth"
    assert g.attrs["manifest_sha256"] == m2.digest()
    assert summary["ok"] == 4 and summary["failed"] == len(bad) == 5 and summary["videos"] == 9
    nf = g["videos/num_frames"][:]
    status = np.asarray(g["videos/status"][:], dtype=object)
    ok = status == "ok"
    assert sorted(nf[ok].tolist()) == [30, 30, 33, 33]
    assert g["frames"].shape == (126, 128, 171, 3) and g["frames"].dtype == np.uint8
    assert g["poses/keypoints"].shape == (126, 2, 17, 3) and g["poses/keypoints"].dtype == np.float16
    # offsets are contiguous in manifest order
    starts = g["videos/frame_start"][:][ok]
    assert starts.tolist() == np.concatenate([[0], np.cumsum(nf[ok])[:-1]]).tolist()
    # GOP 12 re-encode: I-frames at source frames 0, 12, 24 of every video
    i0, ni = g["videos/iframe_start"][:][ok], g["videos/num_iframes"][:][ok]
    src = g["iframes/source_index"][:]
    for s, n in zip(i0, ni):
        assert src[s:s + n].tolist() == [0, 12, 24]
    assert set(g["iframes/pict_type"][:].tolist()) == {1}
    # the I-frame image equals (up to re-encode loss) the stored frame it points to
    fi = g["iframes/frame_index"][:]
    frames = g["frames"][:]
    img = g["iframes/images"][:]
    diff = np.abs(img[1].astype(int) - frames[int(starts[0]) + fi[1]].astype(int)).mean()
    assert diff < 6, diff
    # ground-truth poses: person 0 present on every frame, main actor 0, person 1 absent (zeros)
    kp = g["poses/keypoints"][:].astype(np.float32)
    assert (g["poses/main_actor"][:] == 0).all()
    assert np.all(kp[:, 1] == 0)
    assert np.all((kp[:, 0, :, :2] >= 0) & (kp[:, 0, :, :2] <= 1))
    # no staging left behind
    assert not (Path(out) / STAGING).exists()


def test_bad_files_recorded_and_skipped(dataset, reference):
    _, _, bad, _ = dataset
    out, summary = reference
    g = zarr.open_group(str(out), mode="r")
    paths = np.asarray(g["videos/path"][:], dtype=object)
    reasons = np.asarray(g["videos/reason"][:], dtype=object)
    status = np.asarray(g["videos/status"][:], dtype=object)
    for name, expect in bad.items():
        k = [i for i, p in enumerate(paths) if p.endswith(f"v_bad_{name}.avi")][0]
        assert status[k] == "failed"
        assert expect in reasons[k], (name, reasons[k])
        assert g["videos/num_frames"][k] == 0 and g["videos/num_iframes"][k] == 0
    assert {f["path"].split("/")[-1] for f in summary["failures"]} == {f"v_bad_{n}.avi" for n in bad}
    # failed videos contribute no rows (never zero-filled)
    assert g["frames"].shape[0] == int(g["videos/num_frames"][:].sum())


def test_rerun_of_complete_store_is_a_noop(dataset, reference):
    _, _, _, m2 = dataset
    out, summary = reference
    mtime = (Path(out) / "zarr.json").stat().st_mtime_ns
    again = preprocess_dataset(m2, out, pose="groundtruth", workers=0, shard_frames=32, progress=False)
    assert again == summary
    assert (Path(out) / "zarr.json").stat().st_mtime_ns == mtime


def test_other_options_refused(dataset, reference):
    _, _, _, m2 = dataset
    out, _ = reference
    with pytest.raises(StoreError, match="different options"):
        preprocess_dataset(m2, out, pose="groundtruth", workers=0, shard_frames=32, frame_step=2,
                           progress=False)


def test_wrong_root_fails_before_work(dataset, tmp_path):
    _, m, _, _ = dataset
    from csvr.data_manifests.manifest import Manifest

    bogus = Manifest(m.dataset, tmp_path / "nope", list(m.classes), list(m.videos))
    with pytest.raises(FileNotFoundError, match="nope"):
        preprocess_dataset(bogus, tmp_path / "s.zarr", pose="groundtruth", workers=0, progress=False)
    assert not (tmp_path / "s.zarr").exists()
    with pytest.raises(ValueError, match="unknown pose backend"):
        preprocess_dataset(m, tmp_path / "s.zarr", pose="nosuch", workers=0, progress=False)
    assert not (tmp_path / "s.zarr").exists()


def test_frame_step_and_native_policy(dataset, tmp_path):
    _, m, _, _ = dataset
    out = tmp_path / "s2.zarr"
    preprocess_dataset(m, f"file://{out}", pose="groundtruth", workers=0, frame_step=2,
                       iframe_policy="native", shard_frames=32, progress=False)
    g = open_store(str(out))
    assert g["videos/num_frames"][:].tolist() == [15, 17, 15, 17]  # ceil(30/2), ceil(33/2)
    assert g.attrs["iframe_policy"] == {"policy": "native", "gop": None}
    # the test videos were written with GOP 10: native I-frames at 0, 10, 20, 30 (when present)
    src = g["iframes/source_index"][:]
    fi = g["iframes/frame_index"][:]
    assert src[:3].tolist() == [0, 10, 20]
    assert fi[:3].tolist() == [0, 5, 10]


def test_two_workers_equal_one_worker(dataset, reference, tmp_path):
    _, _, _, m2 = dataset
    ref, _ = reference
    one, two = tmp_path / "one.zarr", tmp_path / "two.zarr"
    preprocess_dataset(m2, one, pose="groundtruth", workers=1, shard_frames=32, progress=False)
    preprocess_dataset(m2, two, pose="groundtruth", workers=2, shard_frames=32, progress=False)
    assert_stores_equal(str(one), str(two))
    assert_stores_equal(str(ref), str(two))


def test_existing_scheduler(dataset, reference, tmp_path):
    """--scheduler ADDRESS: the work runs on an existing Dask cluster and gives the same store."""
    from distributed import LocalCluster

    _, _, _, m2 = dataset
    out = tmp_path / "sched.zarr"
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None, processes=True) as cluster:
        preprocess_dataset(m2, out, pose="groundtruth", scheduler=cluster.scheduler_address,
                           shard_frames=32, progress=False)
    assert_stores_equal(str(reference[0]), str(out))


RUNNER = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from csvr.data_manifests.manifest import Manifest, VideoEntry
from csvr.preprocess.pipeline import preprocess_dataset
import csvr.preprocess.pipeline as pl, time
orig = pl.process_video
def slow(*a):  # slow each video down so the kill lands mid-way
    time.sleep(0.3)
    return orig(*a)
pl.process_video = slow
orig_shard = pl.write_shard_task
def slow_shard(*a):
    time.sleep(0.3)
    return orig_shard(*a)
pl.write_shard_task = slow_shard
from preprocess_testdata import add_bad_files, make_dataset
m = make_dataset(Path({root!r}), per_class=2)
bad, m2 = add_bad_files(Path({root!r}), m)
preprocess_dataset(m2, {out!r}, pose="groundtruth", workers=0, shard_frames=32, progress=False)
"""


def _run_and_kill(root: Path, out: Path, until) -> None:
    code = RUNNER.format(tests=str(REPO / "tests"), root=str(root), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, start_new_session=True)
    deadline = time.time() + 60
    try:
        while not until() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _markers(out: Path, sub: str) -> list[Path]:
    d = out / STAGING / sub
    return sorted(d.glob("*.json")) if d.is_dir() else []


def test_sigkill_and_resume_equals_uninterrupted(tmp_path, reference):
    ref, ref_summary = reference
    root = tmp_path / "data"  # same content as the reference dataset (deterministic generator)
    out = tmp_path / "killed.zarr"
    # kill 1: in phase 1, after two videos were staged
    _run_and_kill(root, out, lambda: len(_markers(out, "videos")) >= 2)
    assert not zarr.open_group(str(out), mode="r").attrs["complete"]
    with pytest.raises(StoreError, match="incomplete"):
        open_store(str(out))
    # kill 2: in phase 2, after some shards were written
    _run_and_kill(root, out, lambda: len(_markers(out, "shards")) >= 2)
    # simulate a shard left half-written by the kill: drop its marker and garble its file
    marker = _markers(out, "shards")[0]
    marker.unlink()
    shard_file = out / "frames" / "c" / "0" / "0" / "0" / "0"
    shard_file.write_bytes(shard_file.read_bytes()[:100])
    from preprocess_testdata import add_bad_files, make_dataset

    m = make_dataset(root, per_class=2)
    _, m2 = add_bad_files(root, m)
    summary = preprocess_dataset(m2, out, pose="groundtruth", workers=0, shard_frames=32, progress=False)
    assert summary["ok"] == ref_summary["ok"] and summary["frames"] == ref_summary["frames"]
    assert_stores_equal(str(ref), str(out))
    from csvr.preprocess.verify import verify_store

    problems, _ = verify_store(str(out))
    assert problems == []


def test_memory_url_in_process(dataset, reference):
    """An fsspec URL other than a local path: memory:// (in-process only) gives the same store."""
    _, m, _, _ = dataset
    import fsspec

    url = "memory://csvr-test-store"
    try:
        summary = preprocess_dataset(m, url, pose="groundtruth", workers=0, shard_frames=32, progress=False)
        assert summary["ok"] == 4 and summary["frames"] == 126
        g = open_store(url)
        ref = zarr.open_group(str(reference[0]), mode="r")
        ok = np.asarray(ref["videos/status"][:], dtype=object) == "ok"
        assert np.array_equal(g["frames"][:], ref["frames"][:])  # same videos, no failed ones between
        assert g["videos/num_frames"][:].tolist() == ref["videos/num_frames"][:][ok].tolist()
        from csvr.preprocess.verify import verify_store

        assert verify_store(url)[0] == []
    finally:
        fsspec.filesystem("memory").rm("/csvr-test-store", recursive=True)


def test_symlinks_out_of_the_root_are_refused_unless_allowed(tmp_path):
    root = tmp_path / "data"
    m = make_dataset(root, classes=("Alpha",), per_class=2)
    inside = root / m.videos[0].path
    outside = tmp_path / "elsewhere" / inside.name
    outside.parent.mkdir()
    inside.rename(outside)
    inside.symlink_to(outside)  # a link in the dataset tree to a file outside it
    out = tmp_path / "refused.zarr"
    summary = preprocess_dataset(m, out, pose="groundtruth", workers=0, shard_frames=32, progress=False)
    g = open_store(str(out))
    status = np.asarray(g["videos/status"][:], dtype=object).tolist()
    reasons = np.asarray(g["videos/reason"][:], dtype=object).tolist()
    assert summary["failed"] == 1 and status == ["failed", "ok"]
    assert "resolves outside the dataset root" in reasons[0] and str(outside) in reasons[0]
    allowed = preprocess_dataset(m, tmp_path / "allowed.zarr", pose="groundtruth", workers=0, shard_frames=32,
                                 progress=False, follow_links=True)
    assert allowed["ok"] == 2 and allowed["failed"] == 0


def _overwrite(path: Path, at: float, nbytes: int = 2048) -> None:
    data = bytearray(path.read_bytes())
    lo = int(len(data) * at)
    data[lo:lo + nbytes] = np.random.default_rng(1).integers(0, 256, nbytes, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def test_partly_broken_inputs_are_degraded_and_good_videos_unchanged(synthetic_root, synthetic_store, tmp_path):
    import shutil

    from click.testing import CliRunner

    from csvr.cli import main
    from csvr.data_manifests import build_manifest
    from csvr.train.data import StoreReader

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    m = build_manifest("synthetic", root=root)
    mid, cut = root / m.videos[1].path, root / m.videos[2].path
    _overwrite(mid, 0.5)                                        # 2 kB overwritten in the middle
    cut.write_bytes(cut.read_bytes()[: int(cut.stat().st_size * 0.97)])  # the last 3% cut off
    out = tmp_path / "damaged.zarr"
    summary = preprocess_dataset(m, out, pose="groundtruth", workers=0, progress=False)
    g = open_store(str(out))
    status = np.asarray(g["videos/status"][:], dtype=object)
    reason = np.asarray(g["videos/reason"][:], dtype=object)
    assert status[1] == "degraded" and "frame(s) flagged corrupt" in reason[1] and "decoder error" in reason[1]
    assert status[2] == "degraded" and reason[2], reason[2]
    assert summary["degraded"] == 2 and {d["path"] for d in summary["degraded_videos"]} == {m.videos[1].path,
                                                                                         m.videos[2].path}
    assert (status[[0, *range(3, len(status))]] == "ok").all()
    assert summary["skipped_files"] == {}  # UCF-101/ holds only the videos (counting: test_manifest_parsers)
    # the good videos' rows are byte-identical to those of a clean run of the same dataset
    clean = open_store(str(synthetic_store))
    for name in ("frames", "poses/keypoints", "iframes/images"):
        fam = "iframe" if name.startswith("iframes") else "frame"
        for k in [0, *range(3, len(status))]:
            def rows(grp):
                s, n = int(grp[f"videos/{fam}_start"][k]), int(grp[f"videos/num_{fam}s"][k])
                return grp[name][s:s + n]
            assert np.array_equal(rows(g), rows(clean)), (name, k)
    # degraded videos are trained on unless preprocessing said otherwise, and `ls --status degraded` lists them
    assert {1, 2} <= set(StoreReader(out).videos.rows_in_split(None, 1, StoreReader(out).usable_statuses).tolist())
    res = CliRunner().invoke(main, ["shards", "ls", str(out), "--status", "degraded"])
    assert res.exit_code == 0 and "2 videos" in res.output and res.output.count("degraded (") == 2, res.output
    skip = preprocess_dataset(m, tmp_path / "skip.zarr", pose="groundtruth", workers=0, progress=False,
                              use_degraded=False)
    assert skip["degraded"] == 2
    assert StoreReader(tmp_path / "skip.zarr").usable_statuses == ("ok",)
