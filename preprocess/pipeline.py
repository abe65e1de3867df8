"""``preprocess_dataset``: a manifest of videos -> one complete ``csvr-store/1`` Zarr store, with Dask.

Three phases, each resumable after a kill at any point (SIGKILL included):

1. one task per video: decode + resize, I-frames, poses on every stored frame, main actor; the result
   is staged part by part in ``_staging/videos/NNNNNN/`` (bounded memory) and then ``NNNNNN.json`` (the
   done marker, written last, atomically); unusable files get only a json with ``status=failed`` and the reason;
2. offsets from the per-video counts in manifest order; one task per shard assembles its row range
   from the staged videos and writes it (the only writer of that shard), then drops a done marker
   with the shard checksums; a shard without a marker is rewritten from scratch;
3. the per-video table, checksums and summary are written, ``complete=True`` last, staging removed.

A 2-worker run writes byte-identical arrays to a 1-worker run: every task is a pure function of its
inputs and batching never crosses videos.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from csvr.preprocess import store as st
from csvr.contracts import STORED_STATUSES
from csvr.preprocess.schema import FRAME_ARRAYS, IFRAME_ARRAYS, SCHEMA, StoreError, table_sha256

log = logging.getLogger(__name__)

STAGING = "_staging"
IFRAME_POLICIES = ("native", "reencode")


@dataclass(frozen=True)
class Options:
    """Every preprocessing option; recorded verbatim in the store's ``options`` attribute."""

    pose: str = "yolo"
    pose_options: dict = field(default_factory=dict)
    frame_size: tuple[int, int] = (128, 171)
    frame_step: int = 1
    iframe_policy: str = "reencode"
    gop: int = 12
    max_people: int = 2
    pose_cap: int = 320
    pose_batch: int = 32
    shard_frames: int = st.DEFAULT_SHARD_FRAMES
    shard_iframes: int = st.DEFAULT_SHARD_FRAMES // 4
    codec: str = "none"
    jpeg_quality: int = 90        # with codec "jpeg" (docs/store.md, "Compact formats")
    split: int | None = None
    limit: int | None = None
    use_degraded: bool = True     # train on `degraded` videos (stored and listed either way; docs/store.md)

    def validate(self) -> None:
        H, W = self.frame_size
        if H < 8 or W < 8:
            raise ValueError(f"frame_size must be at least 8x8, got {self.frame_size}")
        if self.frame_step < 1:
            raise ValueError(f"frame_step must be >= 1, got {self.frame_step}")
        if self.iframe_policy not in IFRAME_POLICIES:
            raise ValueError(f"iframe_policy must be one of {IFRAME_POLICIES}, got {self.iframe_policy!r}")
        if self.gop < 1:
            raise ValueError(f"gop must be >= 1, got {self.gop}")
        if not 1 <= self.max_people <= 64:
            raise ValueError(f"max_people must be in 1..64, got {self.max_people}")
        if self.pose_batch < 1 or self.pose_cap < 32:
            raise ValueError("pose_batch must be >= 1 and pose_cap >= 32")
        st.frame_codecs(self.codec, self.jpeg_quality)
        st.Layout(self.shard_frames, self.shard_iframes)

    def to_json(self) -> dict:
        d = asdict(self)
        d["frame_size"] = list(self.frame_size)
        if self.codec != "jpeg":  # stores written before the jpeg codec keep resuming
            del d["jpeg_quality"]
        return d


# ---------------------------------------------------------------- phase 1: one task per video

_ESTIMATORS: dict[str, Any] = {}


def _estimator(name: str, options: dict, max_people: int):
    """The pose estimator of this process (built once per worker, on first use)."""
    import json

    key = json.dumps([name, options, max_people], sort_keys=True)
    if key not in _ESTIMATORS:
        from csvr.preprocess.pose import build_estimator

        _ESTIMATORS[key] = build_estimator(name, max_people=max_people, **options)
    return _ESTIMATORS[key]


def _fit_people(a: np.ndarray, P: int) -> np.ndarray:
    """Pad with zeros / truncate axis 1 to P people."""
    if a.shape[1] == P:
        return a
    if a.shape[1] > P:
        return a[:, :P]
    pad = np.zeros((a.shape[0], P - a.shape[1], *a.shape[2:]), a.dtype)
    return np.concatenate([a, pad], axis=1)


def pose_chunk(est, pose_frames: np.ndarray, source_indices: np.ndarray, video_path: Path,
               max_people: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Poses on frames in batches of `batch` -> keypoints (n,P,17,3), boxes (n,P,5) float32."""
    kps, bxs = [], []
    for s in range(0, len(pose_frames), batch):
        pb = est.estimate(pose_frames[s:s + batch], source_indices[s:s + batch], video_path)
        kps.append(_fit_people(np.asarray(pb.keypoints, np.float32), max_people))
        bxs.append(_fit_people(np.asarray(pb.boxes, np.float32), max_people))
    return np.concatenate(kps), np.concatenate(bxs)


# Stored frames per staged part file of a video (a multiple of the pose batch is used, so batches are the
# same as over the whole video): what one worker holds of a video at a time (docs/store.md, "Memory").
STAGE_CHUNK = 64


def _stage_dir(index: int) -> str:
    return f"{STAGING}/videos/{index:06d}"


def _stage_video(fs: Any, index: int, path: Path, o: "Options") -> dict:
    """Decode, pose-estimate and stage one video part by part; returns the metadata fields it learnt.

    Frames and I-frame images go to ``videos/NNNNNN/frames-KKKKK.npz`` / ``iframes-KKKKK.npz`` as they are
    decoded (STAGE_CHUNK rows each), the small per-frame arrays (poses, main actor, I-frame indices) to
    ``videos/NNNNNN/index.npz`` at the end, so a worker never holds more than one part of the video's frames.
    """
    import tempfile

    from csvr.preprocess.pose.tracking import select_main_actor
    from csvr.preprocess.video import VideoError, VideoStream, iter_intra_frames

    native = o.iframe_policy == "native"
    chunk = max(o.pose_batch, STAGE_CHUNK // o.pose_batch * o.pose_batch)
    fs.rm(_stage_dir(index), recursive=True)  # parts of an interrupted attempt
    est = _estimator(o.pose, o.pose_options, o.max_people)
    t_pose = 0.0
    kps, bxs, isrc, itype = [], [], [], []
    n = ni = 0
    with tempfile.TemporaryDirectory(prefix="csvr-reencode-") as tmp:
        reencode_to = None if native else Path(tmp) / "reencoded.avi"
        vs = VideoStream(path, o.frame_size, o.frame_step, o.pose_cap, chunk=chunk, collect_iframes=native,
                         reencode_gop=None if native else o.gop, reencode_to=reencode_to)
        for part, ch in enumerate(vs.chunks()):
            t = time.perf_counter()
            try:
                kp, bx = pose_chunk(est, ch.pose_frames, ch.source_indices, path, o.max_people, o.pose_batch)
            except (ValueError, OSError, IndexError) as exc:  # e.g. no ground-truth joints for this file
                raise VideoError(f"pose estimation failed: {exc}") from exc
            t_pose += time.perf_counter() - t
            kps.append(kp)
            bxs.append(bx)
            if len(ch.frames):
                st.save_npz(fs, f"{_stage_dir(index)}/frames-{n // chunk:05d}.npz", {"frames": ch.frames})
                n += len(ch.frames)
            if ch.iframes is not None and len(ch.iframes.source_index):
                ni = _stage_iframes(fs, index, ni, chunk, ch.iframes, isrc, itype)
        if not native:
            import av

            container = av.open(str(reencode_to), format="avi")
            try:  # pts of the re-encode are the source frame indices (Mpeg4Writer)
                for ifr in iter_intra_frames(container, o.frame_size, {k: k for k in range(vs.source_frames)},
                                             chunk=chunk):
                    ni = _stage_iframes(fs, index, ni, chunk, ifr, isrc, itype)
            finally:
                container.close()
    kp, bx = np.concatenate(kps), np.concatenate(bxs)
    main = np.asarray(select_main_actor(kp, bx, getattr(est, "tracker", None)), dtype=np.int8)
    src = np.concatenate(isrc) if isrc else np.zeros(0, np.int32)
    st.save_npz(fs, f"{_stage_dir(index)}/index.npz", {
        "poses/keypoints": kp.astype(np.float16),
        "poses/boxes": bx.astype(np.float16),
        "poses/main_actor": main,
        "iframes/frame_index": np.minimum(np.rint(src / o.frame_step), n - 1).astype(np.int32),
        "iframes/source_index": src.astype(np.int32),
        "iframes/pict_type": (np.concatenate(itype) if itype else np.zeros(0, np.uint8)).astype(np.uint8),
        "part_rows": np.asarray(chunk),
    })
    return {"stream": vs, "num_frames": n, "num_iframes": ni, "main": main, "pose_seconds": t_pose}


def _stage_iframes(fs: Any, index: int, start: int, chunk: int, ifr: Any, isrc: list, itype: list) -> int:
    """Append I-frames to the video's staged parts (re-chunked to `chunk` rows per part file)."""
    images = ifr.images
    k = start
    while len(images):
        room = chunk - k % chunk
        key = f"{_stage_dir(index)}/iframes-{k // chunk:05d}.npz"
        head = images[:room]
        if k % chunk:  # the part was started by an earlier call: extend it
            head = np.concatenate([st.load_npz(fs, key)["iframes/images"], head])
        st.save_npz(fs, key, {"iframes/images": head})
        k += min(room, len(images))
        images = images[room:]
    isrc.append(np.asarray(ifr.source_index, np.int32))
    itype.append(np.asarray(ifr.pict_type, np.uint8))
    return k


def staged_rows(fs: Any, index: int, name: str, a: int, b: int) -> np.ndarray:
    """Rows [a, b) of array `name` of staged video `index` (reading only the parts that hold them)."""
    d = _stage_dir(index)
    small = st.load_npz(fs, f"{d}/index.npz")
    if name in small:
        return small[name][a:b]
    per = int(small["part_rows"])
    prefix = "frames" if name == "frames" else "iframes"
    out = [st.load_npz(fs, f"{d}/{prefix}-{k:05d}.npz")[name] for k in range(a // per, (b - 1) // per + 1)]
    return np.concatenate(out)[a - (a // per) * per:b - (a // per) * per]


def failed_meta(index: int, reason: str) -> dict:
    """The staged metadata of a video that is recorded as failed and skipped."""
    return {"index": index, "status": "failed", "reason": reason, "fps": 0.0, "width": 0,
            "height": 0, "source_frames": 0, "num_frames": 0, "num_iframes": 0}


def outside_root(root: Path, rel: str) -> str | None:
    """Why `root / rel` may not be read (it resolves, symlinks included, outside `root`), else None."""
    real_root, target = Path(root).resolve(), (Path(root) / rel).resolve()
    if target == real_root or real_root in target.parents:
        return None
    return f"resolves outside the dataset root (to {target}); pass --follow-links to allow it"


def process_video(url: str, index: int, video_path: str, opts: dict) -> dict:
    """Decode, extract I-frames and poses of one video; stage the result. Returns its metadata.

    Idempotent: a video whose done marker exists is not processed again.
    """
    from csvr.preprocess.video import VideoError

    fs = st.FS(url)
    marker = f"{STAGING}/videos/{index:06d}.json"
    if fs.exists(marker):
        return fs.read_json(marker)
    o = Options(**{**opts, "frame_size": tuple(opts["frame_size"])})
    path = Path(video_path)
    t0 = time.perf_counter()
    try:
        staged = _stage_video(fs, index, path, o)
    except VideoError as exc:
        fs.rm(_stage_dir(index), recursive=True)
        reason = str(exc).replace(str(path), path.name)  # the table holds the path; keep runs comparable
        meta = failed_meta(index, reason)
        log.warning("%s: skipped: %s", path, exc)
        fs.write_json(marker, meta)
        return meta
    vs, n, main = staged["stream"], staged["num_frames"], staged["main"]
    degraded = vs.degraded_reason()
    if degraded:
        log.warning("%s: stored as degraded: %s", path, degraded)
    meta = {"index": index, "status": "degraded" if degraded else "ok", "reason": degraded,
            "damage": vs.damage, "fps": float(vs.fps), "width": vs.width,
            "height": vs.height, "source_frames": vs.source_frames, "num_frames": n,
            "num_iframes": staged["num_iframes"],
            "pose_coverage": float((main >= 0).mean()) if n else 0.0,
            "seconds": {"decode": time.perf_counter() - t0 - staged["pose_seconds"], "pose": staged["pose_seconds"]}}
    fs.write_json(marker, meta)  # written last: the video is done only once this exists
    return meta


# ---------------------------------------------------------------- phase 2: one task per shard

def _pieces(counts: list[int], starts: list[int], lo: int, hi: int) -> list[tuple[int, int, int]]:
    """(video index, first row within the video, last row + 1) of videos overlapping rows [lo, hi)."""
    out = []
    for v, (n, s) in enumerate(zip(counts, starts)):
        if n and s < hi and s + n > lo:
            out.append((v, max(lo, s) - s, min(hi, s + n) - s))
    return out


def write_shard_task(url: str, family: str, shard: int, lo: int, hi: int,
                     pieces: list[tuple[int, int, int]]) -> dict:
    """Assemble rows [lo, hi) of the ``family`` arrays ("frames" or "iframes") and write that shard."""
    import zarr

    fs = st.FS(url)
    marker = f"{STAGING}/shards/{family}-{shard:06d}.json"
    if fs.exists(marker):
        return fs.read_json(marker)
    names = FRAME_ARRAYS if family == "frames" else IFRAME_ARRAYS
    group = zarr.open_group(store=url, mode="r+")
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for v, a, b in pieces:
        for n in names:
            parts[n].append(staged_rows(fs, v, n, a, b))
    sums = {}
    for n in names:
        arr = group[n]
        block = (np.concatenate(parts[n]) if parts[n]
                 else np.zeros((0, *arr.shape[1:]), arr.dtype)).astype(arr.dtype, copy=False)
        if len(block) != hi - lo:
            raise RuntimeError(f"{n} shard {shard}: assembled {len(block)} rows, expected {hi - lo}")
        sums[n] = st.write_shard(group, fs, n, shard, lo, block)
    result = {"family": family, "shard": shard, "rows": [lo, hi], "sha256": sums}
    fs.write_json(marker, result)
    return result


# ---------------------------------------------------------------- execution

class _Inline:
    """Runs tasks in this process (``workers=0``): for debugging and in-memory URLs."""

    def submit(self, fn, *args, **kwargs):
        from concurrent.futures import Future

        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # propagated by .result()
            fut.set_exception(exc)
        return fut


@contextmanager
def _executor(workers: int, scheduler: str | None) -> Iterator[Any]:
    if scheduler:
        from distributed import Client

        with Client(scheduler) as client:
            _log_dashboard(client, scheduler=scheduler)
            yield client
        return
    if workers <= 0:
        yield _Inline()
        return
    from distributed import Client, LocalCluster

    quiet = max(logging.WARNING, logging.getLogger().getEffectiveLevel())
    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core",
                 "distributed.worker", "distributed.http.proxy"):
        logging.getLogger(name).setLevel(quiet)
    bokeh = _bokeh_usable()  # the dashboard needs bokeh, not a dependency of csvr (README)
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":8787" if bokeh else None,
                      processes=True, silence_logs=quiet) as cluster, Client(cluster) as client:
        _log_dashboard(client, bokeh=bokeh)
        yield client


def _bokeh_usable() -> bool:
    """bokeh installed at a version the Dask dashboard accepts (distributed.versions.BOKEH_REQUIREMENT)."""
    try:
        from importlib.metadata import version

        from distributed.versions import BOKEH_REQUIREMENT

        return BOKEH_REQUIREMENT.specifier.contains(version("bokeh"), prereleases=True)
    except Exception:  # not installed, or an older distributed
        return False


def _log_dashboard(client: Any, *, scheduler: str | None = None, bokeh: bool = True) -> None:
    """One line: the Dask dashboard's link, or how to get one. Without bokeh the scheduler still serves
    a page at the link, saying that bokeh is missing; the local cluster's line says so instead."""
    try:
        link = client.dashboard_link
    except Exception:  # a scheduler without an HTTP service
        link = None
    if scheduler:
        if link:
            log.info("Dask dashboard of the scheduler at %s: %s", scheduler, link)
        else:
            log.info("the Dask scheduler at %s serves no dashboard", scheduler)
    elif link and bokeh:
        log.info("Dask dashboard: %s", link)
    else:
        log.info("Dask dashboard off: pip install 'bokeh>=3.1' to get one")


def _as_completed(futures: list, client: Any):
    if isinstance(client, _Inline):
        yield from futures
        return
    from distributed import as_completed

    yield from as_completed(futures)


def _run_all(client: Any, calls: list[tuple], desc: str, unit: str, progress: bool,
             on_result: Any = None) -> list:
    """Submit ``(key, fn, *args)`` calls, collect results with a tqdm bar (rate + ETA);
    ``on_result(result)`` runs in this process as each one completes."""
    from tqdm import tqdm

    if not calls:
        return []
    futures = []
    for key, fn, *args in calls:
        if isinstance(client, _Inline):
            futures.append(client.submit(fn, *args))
        else:
            futures.append(client.submit(fn, *args, key=key, pure=False))
    results = []
    with tqdm(total=len(futures), desc=desc, unit=unit, disable=not progress, smoothing=0.1) as bar:
        for fut in _as_completed(futures, client):
            results.append(fut.result())
            if on_result is not None:
                on_result(results[-1])
            bar.update(1)
    return results


# ---------------------------------------------------------------- the driver

def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("csvr", "av", "zarr", "numcodecs", "numpy", "dask", "distributed", "onnxruntime",
                "ultralytics"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def select_videos(manifest: Any, split: int | None, limit: int | None) -> list[tuple[int, Any]]:
    """(manifest position, entry) of the videos to process, in manifest order."""
    items = list(enumerate(manifest.videos))
    if split is not None:
        items = [(i, v) for i, v in items if v.splits.get(split) in ("train", "test")]
    if limit is not None:
        items = items[:limit]
    return items


def video_ids(paths: list[str]) -> list[str]:
    """Stable ids: the file stem, or the extension-less path where stems collide."""
    stems = [Path(p).stem for p in paths]
    dup = {s for s, c in Counter(stems).items() if c > 1}
    return [str(Path(p).with_suffix("")) if s in dup else s for p, s in zip(paths, stems)]


def _open_or_create(url: str, attrs: dict, overwrite: bool):
    """The store's root group: created fresh, or reopened for resuming when its inputs match."""
    import zarr

    fs = st.FS(url)
    if overwrite and fs.exists(""):
        fs.rm("", recursive=True)
    if fs.exists("zarr.json"):
        try:
            group = zarr.open_group(store=url, mode="r+")
            old = dict(group.attrs)
        except Exception as exc:
            raise StoreError(f"{url}: exists but is not a readable zarr group ({exc}); "
                             "pass --overwrite to replace it") from exc
        if old.get("schema") != SCHEMA:
            raise StoreError(f"{url}: exists with schema {old.get('schema')!r}; pass --overwrite")
        for k in ("dataset", "manifest_sha256", "options", "pose_model"):
            if old.get(k) != attrs[k]:
                raise StoreError(
                    f"{url}: exists from a run with a different {k} ({old.get(k)!r} != {attrs[k]!r}); "
                    "pass --overwrite to replace it or choose another output")
        return group, old
    if fs.exists("") and fs.ls(""):
        raise StoreError(f"{url}: exists and is not a csvr store; choose another output or --overwrite")
    group = zarr.open_group(store=url, mode="w", attributes=attrs)
    return group, attrs


def preprocess_dataset(manifest: Any, out: str | Path, **options: Any) -> dict:
    """Preprocess the videos of ``manifest`` into the store at ``out`` (options: see `_preprocess`).

    A run that fills the disk stops with `DiskSpaceError` naming the store and the free space; rerunning
    after freeing space resumes it (nothing already written is lost)."""
    from csvr.preprocess.space import disk_full_error, is_disk_full

    try:
        return _preprocess(manifest, out, **options)
    except OSError as exc:
        if is_disk_full(exc) and not getattr(exc, "preflight", False):
            raise disk_full_error(str(out), exc) from exc
        raise


def _preprocess(manifest: Any, out: str | Path, *, pose: str = "yolo", workers: int = 1,
                       scheduler: str | None = None, frame_size: tuple[int, int] = (128, 171),
                       frame_step: int = 1, iframe_policy: str = "reencode", gop: int = 12,
                       max_people: int = 2, pose_options: dict | None = None, pose_cap: int = 320,
                       pose_batch: int = 32, shard_frames: int = st.DEFAULT_SHARD_FRAMES,
                       shard_iframes: int | None = None, codec: str = "none", jpeg_quality: int = 90,
                split: int | None = None,
                       limit: int | None = None, overwrite: bool = False,
                       progress: bool = True, follow_links: bool = False, use_degraded: bool = True,
                space_check: bool = True) -> dict:
    """Preprocess the videos of ``manifest`` into the store at ``out`` (path or fsspec URL).

    Rerunning the same call after an interruption resumes it; a complete store is returned as is.
    ``workers=0`` runs in this process without Dask. Returns the summary (also in ``attrs['summary']``).
    A video whose path resolves (symlinks included) outside the dataset root is recorded as failed
    with the reason, unless ``follow_links``. A video the decoder reports damage for (corrupt frames,
    decoder errors, frames missing against the declared count) is stored with status ``degraded`` and the
    reason with counts; ``use_degraded=False`` records that training should leave such videos out.
    Before writing, the store's size is estimated from a sample of the videos and checked against the
    free space (`preprocess.space`; ``space_check=False`` skips it).
    """
    import zarr

    t_start = time.perf_counter()
    o = Options(pose=pose, pose_options=dict(pose_options or {}), frame_size=tuple(frame_size),
                frame_step=frame_step, iframe_policy=iframe_policy,
                gop=gop, max_people=max_people, pose_cap=pose_cap, pose_batch=pose_batch,
                shard_frames=shard_frames,
                shard_iframes=shard_iframes if shard_iframes is not None else max(
                    st.IFRAME_CHUNK, shard_frames // 4 // st.IFRAME_CHUNK * st.IFRAME_CHUNK),
                codec=codec, jpeg_quality=jpeg_quality, split=split, limit=limit, use_degraded=use_degraded)
    o.validate()
    root = Path(manifest.root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist or is not a directory")
    selected = select_videos(manifest, split, limit)
    if not selected:
        raise ValueError(f"no videos to process in {manifest.dataset} at {root} "
                         f"(split={split}, limit={limit})")
    est = _estimator(o.pose, o.pose_options, o.max_people)  # fails here, before any work
    pose_model = (est.describe() if hasattr(est, "describe")
                  else {"name": est.name, "weights_sha256": est.weights_sha256})
    url = st.normalize_url(out)
    opts = o.to_json()
    attrs = {
        "schema": SCHEMA, "complete": False, "dataset": manifest.dataset,
        "manifest_sha256": manifest.digest(), "options": opts, "pose_model": pose_model,
        "iframe_policy": {"policy": o.iframe_policy, "gop": o.gop if o.iframe_policy == "reencode" else None},
        "frame_size": list(o.frame_size), "classes": list(manifest.classes), "versions": _versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "summary": {},
    }
    space = _space_preflight(url, root, selected, o) if space_check else None
    group, existing = _open_or_create(url, attrs, overwrite)
    if existing.get("complete"):
        log.info("%s is already complete", url)
        return dict(existing.get("summary", {}))
    fs = st.FS(url)
    with _executor(workers, scheduler) as client:
        metas = _stage_videos(client, fs, url, root, selected, opts, follow_links, progress)
        rows = _RowPlan.of(selected, metas)
        _write_shards(client, fs, group, url, selected, rows, o, progress)
    _record_shard_checksums(fs, group)
    table_digest = _write_video_table(group, selected, metas, rows)
    summary = _summary(manifest, selected, metas, rows, space, time.perf_counter() - t_start)
    group = zarr.open_group(store=url, mode="r+")
    group.attrs.update({"summary": summary, "table_sha256": table_digest})
    group.attrs.update({"complete": True})  # last: the store is usable only from here on
    fs.rm(STAGING, recursive=True)
    log.info("store %s complete: %d ok, %d failed, %d frames, %d I-frames", url, summary["ok"],
             summary["failed"], rows.F, rows.I)
    return summary


def _space_preflight(url: str, root: Path, selected: list, o: Options) -> dict:
    """Estimate the store from a sample of the videos and refuse to start when the target lacks the space."""
    from csvr.preprocess.space import check_free_space, estimate_store, human

    est = estimate_store([root / v.path for _, v in selected], frame_size=o.frame_size, frame_step=o.frame_step,
                         iframe_policy=o.iframe_policy, gop=o.gop, max_people=o.max_people, codec=o.codec,
                         jpeg_quality=o.jpeg_quality)
    try:
        space = {**est, **check_free_space(url, est)}
    except OSError as exc:
        exc.preflight = True  # refused before writing: not a full disk mid-run
        raise
    log.info("store %s: about %s estimated (%d frames from %d sampled videos), %s needed with staging, %s free",
             url, human(est["store_bytes"]), est["stored_frames"], est["probed"], human(est["peak_bytes"]),
             human(space["free_bytes"]) if space.get("checked") else "not checked")
    return space


def _stage_videos(client: Any, fs: st.FS, url: str, root: Path, selected: list, opts: dict, follow_links: bool,
                  progress: bool) -> dict[int, dict]:
    """Phase 1: decode, pose and stage every video not staged yet; returns each video's staged metadata."""
    done = {int(n[:6]) for n in fs.ls(f"{STAGING}/videos") if n.endswith(".json")}
    if not follow_links:
        for i, v in selected:
            if i not in done and (why := outside_root(root, v.path)) is not None:
                fs.write_json(f"{STAGING}/videos/{i:06d}.json", failed_meta(i, why))
                log.warning("%s: skipped: %s", root / v.path, why)
                done.add(i)
    todo = [(f"video-{i}", process_video, url, i, str(root / v.path), opts) for i, v in selected if i not in done]
    log.info("%d videos, %d already staged, %d to process", len(selected), len(selected) - len(todo), len(todo))
    _run_all(client, todo, "videos", "video", progress)
    return {i: fs.read_json(f"{STAGING}/videos/{i:06d}.json") for i, _ in selected}


@dataclass(frozen=True)
class _RowPlan:
    """Where each selected video's frames and I-frames go in the store's arrays (0 rows for failed videos)."""

    counts: list[int]
    starts: list[int]
    icounts: list[int]
    istarts: list[int]

    @classmethod
    def of(cls, selected: list, metas: dict[int, dict]) -> "_RowPlan":
        stored = [metas[i]["status"] in STORED_STATUSES for i, _ in selected]
        counts = [metas[i]["num_frames"] if ok else 0 for (i, _), ok in zip(selected, stored)]
        icounts = [metas[i]["num_iframes"] if ok else 0 for (i, _), ok in zip(selected, stored)]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
        istarts = np.concatenate([[0], np.cumsum(icounts)[:-1]]).astype(int).tolist()
        return cls(counts, starts, icounts, istarts)

    @property
    def F(self) -> int:
        return int(sum(self.counts))

    @property
    def I(self) -> int:  # noqa: E743 - the store's name for the I-frame count
        return int(sum(self.icounts))


def _write_shards(client: Any, fs: st.FS, group: Any, url: str, selected: list, rows: _RowPlan, o: Options,
                  progress: bool) -> None:
    """Phase 2: create the arrays (once per row plan) and write every shard not written yet, one writer each."""
    layout = st.Layout(o.shard_frames, o.shard_iframes)
    plan = {"F": rows.F, "I": rows.I, "layout": layout.as_dict()}
    plan_key = f"{STAGING}/arrays.json"
    if not fs.exists(plan_key) or fs.read_json(plan_key) != plan:
        fs.rm(f"{STAGING}/shards", recursive=True)
        st.create_arrays(group, rows.F, rows.I, o.frame_size, o.max_people, layout, o.codec, o.jpeg_quality)
        fs.write_json(plan_key, plan)
    manifest_pos = [i for i, _ in selected]
    # staged videos are released as soon as every shard holding their rows is written, so the
    # disk peak is ~one store, not two (a released video is never needed again: its shards are done)
    pending: dict[int, set[tuple[str, int]]] = {i: set() for i in manifest_pos}
    calls = []
    for family, total, cnt, sts, per_shard in (("frames", rows.F, rows.counts, rows.starts, layout.shard_frames),
                                              ("iframes", rows.I, rows.icounts, rows.istarts, layout.shard_iframes)):
        for k in range(st.num_shards(total, per_shard)):
            lo, hi = k * per_shard, min(total, (k + 1) * per_shard)
            pieces = [(manifest_pos[v], a, b) for v, a, b in _pieces(cnt, sts, lo, hi)]
            if fs.exists(f"{STAGING}/shards/{family}-{k:06d}.json"):
                continue
            for v, _, _ in pieces:
                pending[v].add((family, k))
            calls.append((f"shard-{family}-{k}", write_shard_task, url, family, k, lo, hi, pieces))

    def release(result: dict) -> None:
        done_shard = (result["family"], result["shard"])
        for v, waiting in pending.items():
            if done_shard in waiting:
                waiting.discard(done_shard)
                if not waiting:
                    fs.rm(_stage_dir(v), recursive=True)

    _run_all(client, calls, "shards", "shard", progress, on_result=release)


def _record_shard_checksums(fs: st.FS, group: Any) -> None:
    """Phase 3a: each array's per-shard sha256 and size in its attributes (checked by every reader on open)."""
    checksums: dict[str, dict[str, str]] = {n: {} for n in (*FRAME_ARRAYS, *IFRAME_ARRAYS)}
    for name in fs.ls(f"{STAGING}/shards"):
        if name.endswith(".json"):
            res = fs.read_json(f"{STAGING}/shards/{name}")
            for arr, digest in res["sha256"].items():
                checksums[arr][str(res["shard"])] = digest
    for arr, sums in checksums.items():
        sums = dict(sorted(sums.items(), key=lambda kv: int(kv[0])))
        ndim = len(group[arr].shape)
        # sizes let every reader check on open, without reading the data, that each shard is whole
        sizes = {k: (fs.size(st.shard_key(arr, int(k), ndim)) if d != "absent" else 0) for k, d in sums.items()}
        group[arr].attrs.update({"shard_sha256": sums, "shard_bytes": sizes})


def _write_video_table(group: Any, selected: list, metas: dict[int, dict], rows: _RowPlan) -> str:
    """Phase 3b: the per-video table (docs/store.md); returns its digest, checked by `csvr shards verify`."""
    ids = video_ids([v.path for _, v in selected])
    cols: dict[str, list] = {c: [] for c in ("id", "path", "label", "label_name", "split1", "split2",
                                             "split3", "fps", "width", "height", "source_frames",
                                             "num_frames", "frame_start", "num_iframes", "iframe_start",
                                             "status", "reason")}
    for k, (i, v) in enumerate(selected):
        m = metas[i]
        ok = m["status"] in STORED_STATUSES
        row = {"id": ids[k], "path": v.path, "label": v.label, "label_name": v.label_name,
               "split1": v.splits.get(1, ""), "split2": v.splits.get(2, ""), "split3": v.splits.get(3, ""),
               "fps": m["fps"], "width": m["width"], "height": m["height"],
               "source_frames": m["source_frames"], "num_frames": rows.counts[k],
               "frame_start": rows.starts[k] if ok else 0, "num_iframes": rows.icounts[k],
               "iframe_start": rows.istarts[k] if ok else 0, "status": m["status"], "reason": m["reason"]}
        for c in cols:
            cols[c].append(row[c])
    st.write_table(group, cols)
    return table_sha256(cols)


def _summary(manifest: Any, selected: list, metas: dict[int, dict], rows: _RowPlan, space: dict | None,
             seconds: float) -> dict:
    """Phase 3c: the run's summary (counts, failures with reasons, pose coverage), stored in the store's attrs."""
    failed = [(v.path, metas[i]["reason"]) for i, v in selected if metas[i]["status"] not in STORED_STATUSES]
    degraded = [(v.path, metas[i]["reason"]) for i, v in selected if metas[i]["status"] == "degraded"]
    ok_metas = [metas[i] for i, _ in selected if metas[i]["status"] in STORED_STATUSES]
    return {
        "videos": len(selected), "ok": len(ok_metas) - len(degraded), "degraded": len(degraded),
        "failed": len(failed),
        "frames": rows.F, "iframes": rows.I,
        "pose_coverage": (float(np.average([m["pose_coverage"] for m in ok_metas],
                                           weights=[m["num_frames"] for m in ok_metas]))
                          if ok_metas and rows.F else 0.0),
        "failures": [{"path": p, "reason": r} for p, r in failed],
        "degraded_videos": [{"path": p, "reason": r} for p, r in degraded],
        # what the manifest's directory scan left out (files by extension, hidden entries, folders named
        # like videos), so that nothing is skipped without a word
        "skipped_files": (getattr(manifest, "meta", None) or {}).get("skipped", {}),
        "seconds": round(seconds, 3),
        "space_estimate": space,
    }
