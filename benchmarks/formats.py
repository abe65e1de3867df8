"""`csvr bench formats`: the store's frame formats side by side: bytes per frame, projected dataset sizes,
quality against the raw frames, and the training path's full-sample rate per core, in one run.

Two sources, as the issue that asked for it (14) says:
- real clips (`--real DIR`, e.g. ../shared/data/real-clips): each clip decoded and resized to the store's
  frame size; every format encodes and decodes the same frames (bytes per frame, PSNR, decode time);
- a synthetic dataset (`--synthetic ROOT`, `csvr synth`): preprocessed once per format into a real store
  (ground-truth poses, so the pose model costs nothing here), whose bytes per stored frame and full-sample
  rate (clip + future clip + poses + I-frames, the paper's 16 frames at stride 4) are measured with one
  loader thread, next to on-the-fly decoding of the same videos with PyAV, and decord and TorchCodec where
  they run (bare 16-frame clips, one thread; `csvr bench loader`'s decoder rows).

Projected sizes use the real clips' bytes per frame and the datasets' frame counts in `DATASETS`.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from csvr.cli import json_option, write_json

log = logging.getLogger(__name__)

# name -> (frame codec, JPEG quality, frame step)
FORMATS: dict[str, tuple[str, int | None, int]] = {
    "raw": ("none", None, 1),
    "lz4": ("lz4", None, 1),
    "zstd": ("zstd", None, 1),
    "jpeg-95": ("jpeg", 95, 1),
    "jpeg-90": ("jpeg", 90, 1),
    "jpeg-75": ("jpeg", 75, 1),
    "raw, step 4": ("none", None, 4),
    "jpeg-90, step 2": ("jpeg", 90, 2),
    "jpeg-90, step 4": ("jpeg", 90, 4),
}
# name -> (videos, source frames, where the count comes from)
DATASETS: dict[str, tuple[int, float, str]] = {
    "UCF101": (13_320, 2.48e6, "27 h at 25 fps (the dataset paper)"),
    "HMDB51": (6_766, 0.71e6, "~3.5 s per clip at 30 fps (estimate)"),
    "Kinetics-400": (240_000, 64.8e6, "~10 s per clip at ~27 fps (estimate)"),
    "SSv2": (220_847, 10.1e6, "~3.8 s per clip at 12 fps (estimate)"),
}
POSE_BYTES = 2 * (17 * 3 + 5) * 2 + 1  # per stored frame: float16 keypoints + boxes for 2 people, int8 main actor
GOP = 12  # I-frames of the default reencode policy: one per 12 source frames


def _encoder(codec: str, quality: int | None):
    """(encode: frame -> bytes, decode: bytes -> frame) of one frame chunk, as the store writes it."""
    if codec == "jpeg":
        from csvr.codecs import decode_jpeg, encode_jpeg

        return (lambda f: encode_jpeg(f, quality)), decode_jpeg
    if codec == "none":
        return (lambda f: f.tobytes()), None
    from numcodecs import Blosc

    cname, shuffle = {"lz4": ("lz4", Blosc.NOSHUFFLE), "zstd": ("zstd", Blosc.BITSHUFFLE)}[codec]
    blosc = Blosc(cname=cname, clevel=3 if cname == "zstd" else 5, shuffle=shuffle)
    return blosc.encode, blosc.decode


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def real_frames(root: Path, frame_size: tuple[int, int], per_clip: int = 48, max_clips: int = 41) -> np.ndarray:
    """Up to `per_clip` frames of each real clip under `root`, decoded and resized as the store keeps them."""
    from csvr.preprocess.video import VideoStream

    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".avi", ".mp4", ".mkv", ".webm", ".mov"))
    out = []
    for p in paths[:max_clips]:
        try:
            chunk = next(iter(VideoStream(p, frame_size, chunk=per_clip).chunks()))
        except Exception as exc:  # a clip the decoder refuses is left out, with a word
            log.warning("%s: left out (%s)", p, exc)
            continue
        out.append(chunk.frames)
    if not out:
        raise click.UsageError(f"no decodable videos under {root}")
    return np.concatenate(out)


def codec_rows(frames: np.ndarray) -> dict[str, dict[str, float]]:
    """Per format on the same frames: bytes per frame, PSNR against them, encode and decode ms per frame."""
    rows = {}
    for name, (codec, quality, _) in FORMATS.items():
        if name in rows or "step" in name:
            continue
        encode, decode = _encoder(codec, quality)
        t0 = time.perf_counter()
        blobs = [encode(f) for f in frames]
        t_enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        back = [decode(b) for b in blobs] if decode is not None else None
        t_dec = time.perf_counter() - t0
        if codec == "jpeg":
            psnr = _psnr(np.stack(back), frames)
        elif back is not None:
            ok = all(np.array_equal(np.frombuffer(bytes(b), np.uint8).reshape(f.shape), f) for b, f in zip(back, frames))
            psnr = float("inf") if ok else float("nan")
        else:
            psnr = float("inf")
        rows[name] = {"bytes_per_frame": float(np.mean([len(b) for b in blobs])), "psnr_db": psnr,
                      "encode_ms_per_frame": 1e3 * t_enc / len(frames),
                      "decode_ms_per_frame": 1e3 * t_dec / len(frames) if back is not None else 0.0}
    return rows


def projected_bytes(frame_bytes: float, step: int) -> dict[str, float]:
    """Store size per dataset for a format: stored frames with their poses, plus one I-frame per GOP."""
    return {d: frames / step * (frame_bytes + POSE_BYTES) + frames / GOP * (frame_bytes + 9)
            for d, (_, frames, _) in DATASETS.items()}


def _slug(name: str) -> str:
    return name.replace(", ", "_").replace(" ", "")


def _full_sample_rate(store: Path, *, batches: int, batch_size: int, seed: int) -> float:
    """Full CSVR samples/s (16 + 16 frames at stride 4, 112 crop, poses, I-frames) with one loader thread."""
    from csvr.benchmarks.loader import time_threaded
    from csvr.train.data import ClipDataset, ClipSpec, StoreReader

    ds = ClipDataset(StoreReader(store), split=None, spec=ClipSpec(frames=16, stride=4, crop=112))
    return time_threaded(ds, threads=1, batch_size=batch_size, batches=batches, seed=seed)["clips_per_s"]


def store_rows(root: Path, work: Path, *, limit: int, batches: int, batch_size: int,
               repeats: int) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Preprocess `root` once per format; per format the bytes per stored frame, PSNR against the raw store
    (step-1 formats) and the median full-sample rate over `repeats` interleaved rounds; and the PyAV row."""
    import zarr

    from csvr.benchmarks.loader import ON_THE_FLY, PyAVBench, decoder_available, resolve_video_paths, time_threaded
    from csvr.data_manifests import build_manifest
    from csvr.preprocess.pipeline import preprocess_dataset
    from csvr.preprocess.space import disk_usage
    from csvr.train.data import StoreReader

    manifest = build_manifest("synthetic", root=root)
    rows: dict[str, dict[str, Any]] = {}
    stores: dict[str, Path] = {}
    for name, (codec, quality, step) in FORMATS.items():
        out = work / f"{_slug(name)}.zarr"
        t0 = time.perf_counter()
        preprocess_dataset(manifest, out, pose="groundtruth", workers=0, frame_step=step, codec=codec,
                           jpeg_quality=quality or 90, limit=limit, progress=False, space_check=False)
        stored = zarr.open_group(str(out), mode="r")["frames"].shape[0]
        rows[name] = {"codec": codec, "jpeg_quality": quality, "frame_step": step, "stored_frames": stored,
                      "store_bytes_per_stored_frame": disk_usage(out) / stored,
                      "frames_bytes_per_stored_frame": disk_usage(out / "frames") / stored,
                      "preprocess_s": round(time.perf_counter() - t0, 2)}
        stores[name] = out
        click.echo(f"{name:>16s}: {rows[name]['store_bytes_per_stored_frame'] / 1e3:7.1f} kB per stored frame")
    raw = zarr.open_group(str(stores["raw"]), mode="r")["frames"]
    pick = np.linspace(0, raw.shape[0] - 1, min(400, raw.shape[0])).round().astype(int)
    ref = raw.get_orthogonal_selection((pick,))
    for name, row in rows.items():
        row["psnr_db_vs_raw_store"] = (_psnr(zarr.open_group(str(stores[name]), mode="r")["frames"]
                                             .get_orthogonal_selection((pick,)), ref)
                                       if row["frame_step"] == 1 else None)
    reader = StoreReader(stores["raw"])
    videos = reader.videos.rows_in_split(None)
    paths = resolve_video_paths(reader, videos, root)
    src = [int(reader.videos["source_frames"][v]) for v in videos]
    decoders: dict[str, Any] = {"pyav": PyAVBench(paths, src, 16, 4, reader.frame_size, 112)}
    skipped = {}
    for name, cls in ON_THE_FLY.items():
        why = decoder_available(name)
        if why is None:
            decoders[name] = cls(paths, src, 16, 4, reader.frame_size, 112)
        else:
            skipped[name] = why
            click.echo(f"{name}: not run ({why})")
    runs: dict[str, list[float]] = {name: [] for name in [*rows, *decoders]}
    for rnd in range(repeats):  # rounds interleave the rows so that other load hits every row alike
        for name in rows:
            runs[name].append(_full_sample_rate(stores[name], batches=batches, batch_size=batch_size, seed=rnd))
        for name, ds in decoders.items():
            runs[name].append(time_threaded(ds, threads=1, batch_size=batch_size, batches=max(2, batches // 4),
                                            seed=rnd)["clips_per_s"])
        click.echo(f"[round {rnd + 1}/{repeats}] " + ", ".join(f"{n} {v[-1]:.1f}" for n, v in runs.items()))
    for name, row in rows.items():
        row["full_samples_per_s_per_core"] = float(np.median(runs[name]))
        row["full_samples_per_s_runs"] = runs[name]
    on_the_fly = {name: {"clips_per_s_per_core": float(np.median(runs[name])), "runs": runs[name]} for name in decoders}
    best = max(on_the_fly, key=lambda n: on_the_fly[n]["clips_per_s_per_core"])
    on_the_fly_rows = {"decoders": on_the_fly, "skipped": skipped, "best": best,
                       "note": "on-the-fly decoding of bare 16-frame clips, one thread (a full sample decodes "
                               "twice the frames and more)"}
    raw_rate = rows["raw"]["full_samples_per_s_per_core"]
    for row in rows.values():
        row["vs_raw_store"] = row["full_samples_per_s_per_core"] / raw_rate
        row["vs_best_on_the_fly_bare_clips"] = row["full_samples_per_s_per_core"] / on_the_fly[best]["clips_per_s_per_core"]
    return rows, on_the_fly_rows


def run_formats(real: Path | None, synthetic: Path | None, *, limit: int = 24, batches: int = 12,
                batch_size: int = 8, repeats: int = 3, work_dir: Path | None = None) -> dict[str, Any]:
    """Every measurement of the module docstring; returns the JSON document."""
    frame_size = (128, 171)
    result: dict[str, Any] = {"frame_size": list(frame_size), "formats": {n: {"codec": c, "jpeg_quality": q,
                                                                            "frame_step": s}
                                                                        for n, (c, q, s) in FORMATS.items()},
                              "datasets": {d: {"videos": v, "source_frames": f, "source": s}
                                           for d, (v, f, s) in DATASETS.items()}}
    if real is not None:
        frames = real_frames(real, frame_size)
        rows = codec_rows(frames)
        for name, (codec, quality, step) in FORMATS.items():
            base = rows[_base(name)]
            proj = projected_bytes(base["bytes_per_frame"], step)
            rows.setdefault(name, dict(base))["projected_gb"] = {d: b / 1e9 for d, b in proj.items()}
        result["real"] = {"root": str(real), "frames": int(len(frames)), "rows": rows}
        for name, row in rows.items():
            click.echo(f"{name:>16s}: {row['bytes_per_frame'] / 1e3:6.1f} kB/frame, PSNR {row['psnr_db']:5.1f} dB, "
                       "projected " + ", ".join(f"{d} {g:,.0f} GB" for d, g in row["projected_gb"].items()))
    if synthetic is not None:
        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
            rows, on_the_fly = store_rows(synthetic, Path(tmp), limit=limit, batches=batches,
                                          batch_size=batch_size, repeats=repeats)
        result["synthetic"] = {"root": str(synthetic), "videos": limit, "rows": rows, "on_the_fly": on_the_fly}
        best = on_the_fly["best"]
        for name, d in on_the_fly["decoders"].items():
            click.echo(f"{name:>16s}: {d['clips_per_s_per_core']:6.1f} bare clips/s per core (on the fly)")
        for name, row in rows.items():
            click.echo(f"{name:>16s}: {row['full_samples_per_s_per_core']:6.1f} full samples/s per core "
                       f"({row['vs_raw_store']:.2f} of raw, {row['vs_best_on_the_fly_bare_clips']:.1f}x {best} bare clips)")
    result["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    result["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return result


def _base(name: str) -> str:
    """The step-1 format a subsampled format shares its frame codec with."""
    codec, quality, _ = FORMATS[name]
    return next(n for n, (c, q, s) in FORMATS.items() if (c, q, s) == (codec, quality, 1))


@click.command("formats")
@json_option(required=True)
@click.option("--real", "real", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A folder of real videos (e.g. ../shared/data/real-clips): bytes per frame, PSNR, projections.")
@click.option("--synthetic", "synthetic", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="A `csvr synth` root: one store per format, its bytes and full-sample rate.")
@click.option("--videos", "limit", type=int, default=24, show_default=True, help="Synthetic videos per store.")
@click.option("--batches", type=int, default=12, show_default=True, help="Timed batches per rate.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Samples per batch.")
@click.option("--repeats", type=int, default=3, show_default=True, help="Interleaved rounds (median reported).")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the per-format stores are built (a temporary folder, removed after).")
def bench_formats(json_out: Path, real: Path | None, synthetic: Path | None, limit: int, batches: int,
                  batch_size: int, repeats: int, work_dir: Path | None) -> None:
    """Frame formats: bytes per frame, projected dataset sizes, PSNR and full-sample rate per core."""
    if real is None and synthetic is None:
        raise click.UsageError("give --real DIR and/or --synthetic ROOT")
    write_json(json_out, run_formats(real, synthetic, limit=limit, batches=batches, batch_size=batch_size,
                                     repeats=repeats, work_dir=work_dir))
