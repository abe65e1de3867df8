"""``csvr bench preprocess``: preprocessing speed, its parts, compressors and store size (prints + JSON).

Measures on the same videos and machine: I-frame extraction vs a full decode; pose frames/s per core at
320x240; whole-pipeline videos/s with 1 and 2 workers and its ratio to the sum of its unavoidable parts
(decode + resize, pose inference, compression) measured alone; compressors on real frames; bytes on
disk per stored frame; and from these an estimate for UCF101 on a 16-core node.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from csvr.cli import json_option, write_json

log = logging.getLogger(__name__)

# UCF101: 13,320 videos, ~2.48 M frames at 320x240 (avg 7.21 s at 25 fps; Soomro et al. 2012)
UCF101_VIDEOS = 13320
UCF101_FRAMES = 2_484_000


def _time(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_iframes(paths: list[Path], policy_note: str) -> dict:
    """Full decode to RGB vs native I-frame extraction (skip_frame=NONINTRA) on the same files."""
    from csvr.preprocess.video import full_decode_count, native_iframes

    full = iframe = 0.0
    frames = iframes = 0
    for p in paths:
        full += _time(lambda: full_decode_count(p), 2)
        frames += full_decode_count(p)
        iframe += _time(lambda: native_iframes(p, (128, 171)), 2)
        iframes += len(native_iframes(p, (128, 171)).source_index)
    return {"videos": len(paths), "frames": frames, "iframes": iframes, "note": policy_note,
            "full_decode_s": round(full, 4), "iframe_extract_s": round(iframe, 4),
            "speedup": round(full / iframe, 2) if iframe else None}


def bench_pose(frames_240x320: np.ndarray, batch: int = 32) -> dict:
    """YOLO11n-pose (ONNX Runtime, 1 thread) frames/s on 320x240 frames."""
    from csvr.preprocess.pose import build_estimator

    est = build_estimator("yolo", threads=1, max_people=2)
    x = frames_240x320[:batch]
    est.estimate(x[:4], np.arange(4), None)  # warm-up
    n = 0
    t = time.perf_counter()
    while time.perf_counter() - t < 3.0:
        est.estimate(x, np.arange(len(x)), None)
        n += len(x)
    dt = time.perf_counter() - t
    return {"backend": "yolo (onnxruntime, 1 thread)", "input": list(x.shape[1:3]), "batch": len(x),
            "frames_per_s_per_core": round(n / dt, 1), "ms_per_frame": round(1000 * dt / n, 2)}


def bench_compressors(frames: np.ndarray) -> dict:
    """Blosc codecs on (32, H, W, 3) chunks of real frames: ratio, encode and decode MB/s."""
    from numcodecs import Blosc

    codecs = {
        "blosc-lz4": Blosc("lz4", 5, Blosc.NOSHUFFLE),
        "blosc-lz4-bitshuffle": Blosc("lz4", 5, Blosc.BITSHUFFLE),
        "blosc-zstd1": Blosc("zstd", 1, Blosc.NOSHUFFLE),
        "blosc-zstd3-bitshuffle": Blosc("zstd", 3, Blosc.BITSHUFFLE),
        "blosc-zstd5": Blosc("zstd", 5, Blosc.NOSHUFFLE),
    }
    chunks = [np.ascontiguousarray(frames[s:s + 32]) for s in range(0, len(frames) - 31, 32)][:8]
    raw = sum(c.nbytes for c in chunks)
    out = {}
    for name, c in codecs.items():
        c.blocksize = 0
        enc = [c.encode(x) for x in chunks]
        te = _time(lambda: [c.encode(x) for x in chunks], 3)
        td = _time(lambda: [c.decode(e) for e in enc], 3)
        size = sum(len(e) for e in enc)
        out[name] = {"ratio": round(raw / size, 3), "encode_MBps": round(raw / te / 1e6, 1),
                     "decode_MBps": round(raw / td / 1e6, 1)}
    return {"chunk": [32, *frames.shape[1:]], "chunks": len(chunks), "codecs": out}


def bench_chunks(frames: np.ndarray, workdir: Path, samples: int = 100) -> dict:
    """Random training-pattern reads (16+16 frames at stride 4 = 32 frames over 128) via zarr,
    for frame-chunk sizes and codecs; the raw page-cached memmap read of the same frames as a ceiling."""
    import zarr

    from csvr.preprocess.store import compressor

    frames = frames[: (len(frames) // 32) * 32]
    if len(frames) < 160:
        return {"skipped": f"only {len(frames)} frames"}
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(frames) - 128, samples)
    out: dict[str, Any] = {"frames": len(frames), "samples": samples, "pattern": "a[s:s+128:4]"}
    configs = [("lz4", 1), ("lz4", 8), ("lz4", 32), ("lz4-bitshuffle", 32), ("zstd", 32)]
    for codec, ch in configs:
        path = workdir / f"chunks-{codec}-{ch}.zarr"
        g = zarr.open_group(str(path), mode="w")
        a = g.create_array("f", shape=frames.shape, dtype="uint8", chunks=(ch, *frames.shape[1:]),
                           shards=(len(frames), *frames.shape[1:]), compressors=compressor(codec))
        a[:] = frames
        from csvr.preprocess.store import FS

        disk = FS(str(path)).du("f")
        a = zarr.open_group(str(path), mode="r")["f"]
        for s0 in starts[:5]:
            a[s0:s0 + 128:4]
        t = time.perf_counter()
        for s0 in starts:
            a[s0:s0 + 128:4]
        dt = time.perf_counter() - t
        out[f"{codec}/chunk{ch}"] = {"samples_per_s": round(samples / dt, 1),
                                     "ratio": round(frames.nbytes / disk, 3)}
        shutil.rmtree(path, ignore_errors=True)
    raw = workdir / "raw.npy"
    mm = np.lib.format.open_memmap(str(raw), mode="w+", dtype=np.uint8, shape=frames.shape)
    mm[:] = frames
    mm.flush()
    del mm
    mm = np.load(str(raw), mmap_mode="r")
    t = time.perf_counter()
    for s0 in starts:
        np.array(mm[s0:s0 + 128:4])
    out["raw_memmap"] = {"samples_per_s": round(samples / (time.perf_counter() - t), 1)}
    raw.unlink()
    return out


def bench_parts(paths: list[Path], codec: str = "lz4") -> dict:
    """The unavoidable parts of the pipeline measured alone: decode+resize, pose, compression."""
    from numcodecs import Blosc

    from csvr.preprocess.pose import build_estimator
    from csvr.preprocess.video import decode_video

    est = build_estimator("yolo", threads=1, max_people=2)
    comp = Blosc("lz4", 5, Blosc.NOSHUFFLE) if codec == "lz4" else Blosc("zstd", 3, Blosc.BITSHUFFLE)
    t_dec = t_pose = t_comp = 0.0
    frames = 0
    for p in paths:
        t = time.perf_counter()
        d = decode_video(p, (128, 171), 1, 320)
        t_dec += time.perf_counter() - t
        t = time.perf_counter()
        for s in range(0, len(d.pose_frames), 32):
            est.estimate(d.pose_frames[s:s + 32], d.source_indices[s:s + 32], p)
        t_pose += time.perf_counter() - t
        t = time.perf_counter()
        for s in range(0, len(d.frames), 32):
            comp.encode(np.ascontiguousarray(d.frames[s:s + 32]))
        t_comp += time.perf_counter() - t
        frames += len(d.frames)
    total = t_dec + t_pose + t_comp
    return {"videos": len(paths), "frames": frames, "decode_resize_s": round(t_dec, 3),
            "pose_s": round(t_pose, 3), "compress_s": round(t_comp, 3), "sum_s": round(total, 3)}


def bench_pipeline(manifest: Any, workdir: Path, workers: int, policy: str) -> dict:
    """Whole ``preprocess_dataset`` (yolo poses) wall time, store bytes per frame."""
    from csvr.preprocess.pipeline import preprocess_dataset
    from csvr.preprocess.store import FS

    out = workdir / f"store-w{workers}-{policy}.zarr"
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    summary = preprocess_dataset(manifest, out, pose="yolo", workers=workers, iframe_policy=policy,
                                 progress=False)
    wall = time.perf_counter() - t
    disk = FS(str(out)).du("")
    res = {"workers": workers, "iframe_policy": policy, "videos": summary["videos"], "ok": summary["ok"],
           "frames": summary["frames"], "iframes": summary["iframes"], "wall_s": round(wall, 3),
           "videos_per_s": round(summary["videos"] / wall, 3),
           "frames_per_s": round(summary["frames"] / wall, 1), "bytes_on_disk": disk,
           "bytes_per_frame": round(disk / max(summary["frames"], 1), 1),
           "frame_bytes_per_frame": round(FS(str(out)).du("frames") / max(summary["frames"], 1), 1),
           "pose_coverage": summary["pose_coverage"]}
    shutil.rmtree(out, ignore_errors=True)
    return res


def _cluster_startup(workers: int) -> float:
    from distributed import Client, LocalCluster

    t = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None,
                      processes=True) as c, Client(c) as cl:
        cl.submit(lambda: 1).result()
    return time.perf_counter() - t


@click.command("preprocess")
@json_option()
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="An existing synthetic dataset (default: generate one in a temp dir).")
@click.option("--classes", type=int, default=4, show_default=True, help="Synthetic classes to generate.")
@click.option("--videos-per-class", type=int, default=3, show_default=True,
              help="Synthetic videos per class to generate.")
@click.option("--real-clips", type=click.Path(path_type=Path), default=None,
              help="Folder of real clips (default ../shared/data/real-clips when present).")
@click.option("--policy", type=click.Choice(["native", "reencode"]), default="reencode", show_default=True,
              help="I-frame policy of the pipeline runs (the other one is timed once too).")
@click.option("--skip-scaling", is_flag=True, help="Only the 1-worker pipeline run.")
def bench_preprocess(json_out: Path | None, root: Path | None, classes: int, videos_per_class: int,
                     real_clips: Path | None, policy: str, skip_scaling: bool) -> None:
    """Preprocessing benchmark on synthetic videos (and the real clips when present)."""
    from csvr.data_manifests import build_manifest
    from csvr.preprocess.video import decode_video

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.getLogger("distributed").setLevel(max(logging.WARNING, logging.getLogger().level))
    res: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}}
    tmp = Path(tempfile.mkdtemp(prefix="csvr-bench-"))
    try:
        if root is None:
            from csvr.data_manifests.synthetic import generate

            root = tmp / "synthetic"
            t = time.perf_counter()
            generate(root, videos_per_class=videos_per_class, num_classes=classes, seed=0,
                     seconds=(3.0, 4.0))
            res["generate_s"] = round(time.perf_counter() - t, 2)
        manifest = build_manifest("synthetic", root=root)
        paths = [root / v.path for v in manifest.videos]
        res["dataset"] = {"root": str(root), "videos": len(paths)}
        click.echo(f"dataset: {len(paths)} synthetic videos at {root}")

        res["iframes_synthetic_gop12"] = bench_iframes(paths, "synthetic, native GOP 12")
        click.echo(f"I-frames vs full decode (synthetic GOP 12): {res['iframes_synthetic_gop12']['speedup']}x")
        if real_clips is None:
            cand = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-clips"
            real_clips = cand if cand.is_dir() else None
        real = sorted(p for p in (real_clips.rglob("*") if real_clips else [])
                      if p.suffix in (".avi", ".mp4", ".mkv"))[:12]
        if real:
            res["iframes_real"] = bench_iframes(real, f"{len(real)} real clips from {real_clips}")
            click.echo(f"I-frames vs full decode (real clips): {res['iframes_real']['speedup']}x")

        d = decode_video(paths[0], (128, 171), 1, 320)
        res["pose"] = bench_pose(d.pose_frames)
        click.echo(f"pose: {res['pose']['frames_per_s_per_core']} frames/s per core at 320x240")
        frames = decode_video(real[0] if real else paths[0], (128, 171), 1, 320).frames
        res["compressors"] = bench_compressors(frames)
        for k, v in res["compressors"]["codecs"].items():
            click.echo(f"compressor {k:24s} ratio {v['ratio']:6.2f}  enc {v['encode_MBps']:7.1f} MB/s  "
                       f"dec {v['decode_MBps']:7.1f} MB/s")

        if real:
            big = np.concatenate([decode_video(p, (128, 171), 1, 320).frames for p in real])[:1024]
            res["chunk_reads"] = bench_chunks(big, tmp)
            click.echo(f"chunked reads: {res['chunk_reads']}")
        res["parts"] = bench_parts(paths)
        click.echo(f"parts alone: {res['parts']}")
        res["cluster_startup_s"] = {"1": round(_cluster_startup(1), 2)}
        res["pipeline_1"] = bench_pipeline(manifest, tmp, 1, policy)
        click.echo(f"pipeline 1 worker: {res['pipeline_1']['videos_per_s']} videos/s "
                   f"({res['pipeline_1']['wall_s']} s)")
        p1 = res["pipeline_1"]
        res["pipeline_over_parts"] = round(p1["wall_s"] / res["parts"]["sum_s"], 3)
        res["pipeline_over_parts_excl_startup"] = round(
            (p1["wall_s"] - res["cluster_startup_s"]["1"]) / res["parts"]["sum_s"], 3)
        click.echo(f"pipeline / sum of parts: {res['pipeline_over_parts']} "
                   f"(excluding cluster start-up: {res['pipeline_over_parts_excl_startup']})")
        other = "native" if policy == "reencode" else "reencode"
        res[f"pipeline_1_{other}"] = bench_pipeline(manifest, tmp, 1, other)
        res[f"pipeline_over_parts_{other}"] = round(
            (res[f"pipeline_1_{other}"]["wall_s"] - res["cluster_startup_s"]["1"]) / res["parts"]["sum_s"], 3)
        click.echo(f"pipeline 1 worker ({other}): {res[f'pipeline_1_{other}']['videos_per_s']} videos/s; "
                   f"/ parts (excl. start-up) {res[f'pipeline_over_parts_{other}']}")
        if not skip_scaling:
            res["cluster_startup_s"]["2"] = round(_cluster_startup(2), 2)
            res["pipeline_2"] = bench_pipeline(manifest, tmp, 2, policy)
            res["scaling_2_vs_1"] = round(res["pipeline_2"]["videos_per_s"] / p1["videos_per_s"], 3)
            click.echo(f"pipeline 2 workers: {res['pipeline_2']['videos_per_s']} videos/s; "
                       f"scaling {res['scaling_2_vs_1']}x")
        if real:
            from csvr.data_manifests.manifest import Manifest, VideoEntry

            rm = Manifest("folder", real_clips, ["real"],
                          [VideoEntry(p.relative_to(real_clips).as_posix(), 0, "real", {1: "test"})
                           for p in real])
            res["pipeline_real_1"] = bench_pipeline(rm, tmp, 1, policy)
            click.echo(f"real clips: {res['pipeline_real_1']['bytes_per_frame']} B/frame on disk, "
                       f"pose coverage {res['pipeline_real_1']['pose_coverage']:.3f}")

        # UCF101 estimate on a 16-core node (per-core cost from the 1-worker run, scaling as measured)
        sec_per_frame = (p1["wall_s"] - res["cluster_startup_s"]["1"]) / max(p1["frames"], 1)
        eff = min(1.0, res.get("scaling_2_vs_1", 1.7) / 2)
        bpf = res.get("pipeline_real_1", p1)["bytes_per_frame"]
        res["ucf101_estimate_16_cores"] = {
            "frames": UCF101_FRAMES, "videos": UCF101_VIDEOS, "seconds_per_frame_per_core": sec_per_frame,
            "parallel_efficiency_assumed": round(eff, 3),
            "hours": round(UCF101_FRAMES * sec_per_frame / (16 * eff) / 3600, 2),
            "store_GB": round(UCF101_FRAMES * bpf / 1e9, 1),
            "bytes_per_frame_used": bpf,
        }
        click.echo(f"UCF101 on 16 cores: ~{res['ucf101_estimate_16_cores']['hours']} h, "
                   f"~{res['ucf101_estimate_16_cores']['store_GB']} GB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if json_out:
        write_json(json_out, res, indent=1, announce=True)


__all__ = ["bench_preprocess", "bench_iframes", "bench_pose", "bench_compressors", "bench_parts",
           "bench_pipeline"]


# ---------------------------------------------------------------- peak memory of one worker vs video length

def _rss_child(conn, url: str, index: int, path: str, opts: dict) -> None:  # runs in a fresh process
    import resource

    from csvr.preprocess.pipeline import process_video

    meta = process_video(url, index, path, opts)
    conn.send({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "status": meta["status"],
               "num_frames": meta.get("num_frames", 0)})
    conn.close()


def peak_rss_of_video(video: Path, store_dir: Path, pose: str = "groundtruth", **options: Any) -> dict:
    """Peak RSS (MB) of a fresh process that preprocesses (decode, resize, I-frames, poses, staging) one video
    exactly as a pipeline worker does (`preprocess.pipeline.process_video`)."""
    import multiprocessing as mp

    from csvr.preprocess.pipeline import Options

    store_dir.mkdir(parents=True, exist_ok=True)
    opts = Options(pose=pose, **options).to_json()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_rss_child, args=(child, str(store_dir), 0, str(video), opts))
    t = time.perf_counter()
    p.start()
    out = parent.recv()
    p.join()
    out["seconds"] = round(time.perf_counter() - t, 1)
    return out


@click.command("memory")
@json_option()
@click.option("--seconds", "lengths", default="30,600", show_default=True,
              help="Comma-separated video lengths in seconds (synthetic 320x240 videos at 25 fps).")
def bench_memory(json_out: Path | None, lengths: str) -> None:
    """Peak memory of one preprocessing worker against video length (ground-truth poses, so the pose
    model's constant size does not hide the growth)."""
    from csvr.data_manifests.synthetic import generate

    res: dict[str, Any] = {"videos": []}
    tmp = Path(tempfile.mkdtemp(prefix="csvr-mem-"))
    try:
        for sec in [float(x) for x in lengths.split(",") if x.strip()]:
            root = tmp / f"s{sec:g}"
            generate(root, videos_per_class=2, num_classes=1, seed=0, seconds=(sec, sec))
            video = sorted(root.rglob("*.avi"))[0]
            r = peak_rss_of_video(video, tmp / f"store{sec:g}")
            r.update({"video_seconds": sec, "file": video.name})
            res["videos"].append(r)
            click.echo(f"{sec:g} s video: {r['num_frames']} frames, peak RSS {r['maxrss_mb']:.0f} MB "
                       f"({r['seconds']} s)")
        if len(res["videos"]) > 1:
            res["ratio_longest_to_shortest"] = res["videos"][-1]["maxrss_mb"] / res["videos"][0]["maxrss_mb"]
            click.echo(f"ratio {res['ratio_longest_to_shortest']:.2f} (target <= 1.5)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if json_out:
        write_json(json_out, res)
