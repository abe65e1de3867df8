"""``csvr shards info|ls|show|verify|preview|transcode``: inspect a csvr-store/1 store or re-encode its frames
(``--json PATH`` or ``--json -`` for machines)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click
import numpy as np

from csvr.cli import is_stdout, json_option, progress_disabled, write_json
from csvr.contracts import COCO_EDGES
from csvr.preprocess.verify import verify_store
from csvr.preprocess.schema import FRAME_ARRAYS, IFRAME_ARRAYS, VIDEO_COLUMNS, StoreError, read_table



def _open(store: str, allow_incomplete: bool = True):
    from csvr.preprocess.schema import open_store

    try:
        return open_store(store, allow_incomplete=allow_incomplete)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc


def _emit(obj: Any, json_out: Path | None, text: str) -> None:
    """The text on stdout, and the JSON document to --json PATH; with --json - only the JSON, on stdout."""
    if not is_stdout(json_out):
        click.echo(text)
    if json_out is not None:
        write_json(json_out, obj, indent=1)


def _fs(store: str):
    from csvr.preprocess.store import FS

    return FS(store)


def _coverage(group, table) -> np.ndarray:
    """Fraction of each video's frames with a main actor."""
    main = group["poses/main_actor"][:]
    cov = np.zeros(len(table["id"]))
    for k, (s, n) in enumerate(zip(table["frame_start"], table["num_frames"])):
        if n:
            cov[k] = float((main[s:s + n] >= 0).mean())
    return cov


def _find(table, video: str) -> int:
    for col in ("id", "path"):
        hits = np.flatnonzero(table[col] == video)
        if len(hits):
            return int(hits[0])
    if video.isdigit() and int(video) < len(table["id"]):
        return int(video)
    raise click.ClickException(f"no video {video!r} in the store (give an id, a path or a row number)")


@click.group("shards")
def shards() -> None:
    """Inspect a store: info, ls, show, verify, preview."""


@shards.command("info")
@click.argument("store")
@json_option()
def info(store: str, json_out: Path | None) -> None:
    """Schema, options, counts, sizes on disk, compression ratio and failures."""
    group = _open(store)
    fs = _fs(store)
    attrs = dict(group.attrs)
    arrays = {}
    for name in (*FRAME_ARRAYS, *IFRAME_ARRAYS):
        a = group[name]
        disk = fs.du(name)
        raw = int(a.nbytes)
        arrays[name] = {"shape": list(a.shape), "dtype": str(a.dtype), "chunks": list(a.chunks),
                        "shards": list(a.shards or a.chunks), "bytes_on_disk": disk, "bytes_raw": raw,
                        "ratio": round(raw / disk, 2) if disk else None}
    total = fs.du("")
    F = group["frames"].shape[0]
    out = {"store": store, "schema": attrs.get("schema"), "complete": attrs.get("complete"),
           "dataset": attrs.get("dataset"), "manifest_sha256": attrs.get("manifest_sha256"),
           "frame_size": attrs.get("frame_size"), "iframe_policy": attrs.get("iframe_policy"),
           "pose_model": attrs.get("pose_model"), "options": attrs.get("options"),
           "summary": attrs.get("summary"), "classes": len(attrs.get("classes", [])),
           "bytes_on_disk": total, "bytes_per_frame": round(total / F, 1) if F else None,
           "arrays": arrays, "versions": attrs.get("versions"), "created": attrs.get("created")}
    s = attrs.get("summary", {})
    lines = [f"store      {store}", f"schema     {out['schema']}  complete={out['complete']}",
             f"dataset    {out['dataset']}  classes={out['classes']}  manifest={str(out['manifest_sha256'])[:12]}",
             f"videos     {s.get('videos')} ({s.get('ok')} ok, {s.get('degraded', 0)} degraded, {s.get('failed')} failed)",
             f"frames     {s.get('frames')}  I-frames {s.get('iframes')}  pose coverage "
             f"{s.get('pose_coverage', 0):.3f}",
             f"frame size {out['frame_size']}  I-frame policy {out['iframe_policy']}",
             f"pose model {out['pose_model']}",
             f"on disk    {total / 1e6:.2f} MB  ({out['bytes_per_frame']} B per stored frame)", "arrays:"]
    for name, a in arrays.items():
        lines.append(f"  {name:22s} {str(tuple(a['shape'])):24s} {a['dtype']:8s} chunks {tuple(a['chunks'])[:1]} "
                     f"shards {tuple(a['shards'])[:1]}  {a['bytes_on_disk'] / 1e6:8.2f} MB  ratio {a['ratio']}")
    for f in s.get("failures", []):
        lines.append(f"failed: {f['path']}: {f['reason']}")
    _emit(out, json_out, "\n".join(lines))


@shards.command("ls")
@click.argument("store")
@click.option("--split", "split", type=int, default=None, help="Split number to filter on.")
@click.option("--subset", type=click.Choice(["train", "test", "unused"]), default=None,
              help="Membership in --split (default split 1).")
@click.option("--label", default=None, help="Class name.")
@click.option("--status", type=click.Choice(["ok", "degraded", "failed"]), default=None,
              help="Only videos with this status (degraded: stored, with the decoder's damage in the reason; "
                   "failed: recorded with a reason, no frames).")
@click.option("--limit", type=int, default=None, help="At most this many videos (the first that match).")
@json_option()
def ls(store: str, split: int | None, subset: str | None, label: str | None, status: str | None,
       limit: int | None, json_out: Path | None) -> None:
    """Videos with label, split, frames, I-frames and pose coverage."""
    group = _open(store)
    t = read_table(group)
    cov = _coverage(group, t)
    keep = np.ones(len(t["id"]), bool)
    if subset:
        keep &= t[f"split{split or 1}"] == subset
    elif split:
        keep &= np.isin(t[f"split{split}"], ["train", "test"])
    if label:
        keep &= t["label_name"] == label
    if status:
        keep &= t["status"] == status
    rows = []
    for k in np.flatnonzero(keep)[:limit]:
        rows.append({"row": int(k), "id": t["id"][k], "label": int(t["label"][k]),
                     "label_name": t["label_name"][k], "split1": t["split1"][k],
                     "num_frames": int(t["num_frames"][k]), "num_iframes": int(t["num_iframes"][k]),
                     "pose_coverage": round(float(cov[k]), 3), "status": t["status"][k],
                     "reason": t["reason"][k]})
    lines = [f"{'row':>5} {'id':32s} {'label':20s} {'split1':6s} {'frames':>6} {'iframes':>7} {'pose':>5} status"]
    for r in rows:
        lines.append(f"{r['row']:5d} {r['id'][:32]:32s} {r['label_name'][:20]:20s} {r['split1']:6s} "
                     f"{r['num_frames']:6d} {r['num_iframes']:7d} {r['pose_coverage']:5.2f} {r['status']}"
                     + (f" ({r['reason']})" if r["reason"] else ""))
    lines.append(f"{len(rows)} videos")
    _emit(rows, json_out, "\n".join(lines))


@shards.command("show")
@click.argument("store")
@click.argument("video")
@json_option()
def show(store: str, video: str, json_out: Path | None) -> None:
    """One video's record (VIDEO: id, path or row number)."""
    group = _open(store)
    t = read_table(group)
    k = _find(t, video)
    rec = {c: (t[c][k].item() if hasattr(t[c][k], "item") else t[c][k]) for c in VIDEO_COLUMNS}
    rec["row"] = k
    s, n = int(t["frame_start"][k]), int(t["num_frames"][k])
    if n:
        main = group["poses/main_actor"][s:s + n]
        rec["pose_coverage"] = round(float((main >= 0).mean()), 4)
        i0, ni = int(t["iframe_start"][k]), int(t["num_iframes"][k])
        rec["iframe_frame_index"] = group["iframes/frame_index"][i0:i0 + ni].tolist()
        rec["iframe_source_index"] = group["iframes/source_index"][i0:i0 + ni].tolist()
    _emit(rec, json_out, "\n".join(f"{key:20s} {val}" for key, val in rec.items()))


@shards.command("verify")
@click.argument("store")
@json_option()
def verify(store: str, json_out: Path | None) -> None:
    """Read every chunk, check recorded checksums and table/array consistency (exit 1 on any problem)."""
    try:
        problems, stats = verify_store(store, progress=not progress_disabled())
    except Exception as exc:  # last resort: a problem line and exit 1, never a traceback
        problems, stats = [f"verify failed: {type(exc).__name__}: {exc}"], {}
    out = {"store": store, "ok": not problems, "problems": problems, **stats}
    text = "\n".join([f"PROBLEM: {x}" for x in problems] + [f"note: {x}" for x in stats.get("notes", [])] +
                     [f"{store}: {'OK' if not problems else f'{len(problems)} problem(s)'} "
                      f"({stats.get('shards_checked', 0)} shards, {stats.get('rows_read', 0)} rows read)"])
    _emit(out, json_out, text)
    if problems:
        raise SystemExit(1)


def render_frames(group, k: int, t, max_frames: int = 16, every: int | None = None):
    """PIL images of a video's frames with the main actor's pose drawn and I-frames outlined in red."""
    from PIL import Image, ImageDraw

    s, n = int(t["frame_start"][k]), int(t["num_frames"][k])
    if n == 0:
        raise click.ClickException(f"video {t['id'][k]} has no frames (status {t['status'][k]}: {t['reason'][k]})")
    idx = (np.arange(0, n, every) if every else np.unique(np.linspace(0, n - 1, min(n, max_frames)).astype(int)))
    frames = group["frames"][s:s + n]
    kp = group["poses/keypoints"][s:s + n].astype(np.float32)
    main = group["poses/main_actor"][s:s + n]
    i0, ni = int(t["iframe_start"][k]), int(t["num_iframes"][k])
    iset = set(group["iframes/frame_index"][i0:i0 + ni].tolist())
    H, W = frames.shape[1:3]
    out = []
    for i in idx:
        im = Image.fromarray(frames[i])
        d = ImageDraw.Draw(im)
        if main[i] >= 0:
            pts = kp[i, main[i]]
            for a, b in COCO_EDGES:
                if pts[a, 2] > 0 and pts[b, 2] > 0:
                    d.line([(pts[a, 0] * W, pts[a, 1] * H), (pts[b, 0] * W, pts[b, 1] * H)], fill=(0, 255, 0))
            for x, y, c in pts:
                if c > 0:
                    d.ellipse([x * W - 1.5, y * H - 1.5, x * W + 1.5, y * H + 1.5], fill=(255, 255, 0))
        if int(i) in iset:
            d.rectangle([0, 0, W - 1, H - 1], outline=(255, 0, 0), width=3)
            d.text((3, 3), "I", fill=(255, 0, 0))
        d.text((3, H - 12), str(int(i)), fill=(255, 255, 255))
        out.append(im)
    return out


@shards.command("preview")
@click.argument("store")
@click.argument("video")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="F.png (grid) or F.gif.")
@click.option("--frames", "max_frames", type=int, default=16, show_default=True, help="Frames in a PNG grid.")
@json_option()
def preview(store: str, video: str, out: Path, max_frames: int, json_out: Path | None) -> None:
    """Frames with the main actor's pose drawn and I-frames outlined (PNG grid or animated GIF)."""
    from PIL import Image

    group = _open(store)
    t = read_table(group)
    k = _find(t, video)
    if out.suffix.lower() == ".gif":
        ims = render_frames(group, k, t, every=1)
        fps = float(t["fps"][k]) or 25.0
        ims[0].save(out, save_all=True, append_images=ims[1:], duration=int(1000 / fps), loop=0)
    elif out.suffix.lower() == ".png":
        ims = render_frames(group, k, t, max_frames=max_frames)
        cols = min(4, len(ims))
        rows = math.ceil(len(ims) / cols)
        W, H = ims[0].size
        grid = Image.new("RGB", (cols * W, rows * H))
        for j, im in enumerate(ims):
            grid.paste(im, ((j % cols) * W, (j // cols) * H))
        grid.save(out)
    else:
        raise click.ClickException(f"--out must end in .png or .gif, got {out}")
    _emit({"video": t["id"][k], "out": str(out), "frames": len(ims)}, json_out,
          f"wrote {out} ({len(ims)} frames of {t['id'][k]})")


@shards.command("transcode")
@click.argument("src")
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--codec", type=click.Choice(["none", "lz4", "lz4-bitshuffle", "zstd", "jpeg"]), required=True,
              help="The image arrays' new format (as csvr preprocess --codec).")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=90, show_default=True,
              help="JPEG quality with --codec jpeg.")
@click.option("--overwrite", is_flag=True, help="Replace DST when it exists.")
@json_option()
def transcode(src: str, dst: Path, codec: str, jpeg_quality: int, overwrite: bool, json_out: Path | None) -> None:
    """Copy the complete store SRC to DST with its frame images in another format (no decoding, no pose model)."""
    from csvr.preprocess.transcode import transcode_store

    try:
        summary = transcode_store(src, dst, codec, jpeg_quality, overwrite=overwrite, progress=not progress_disabled())
    except (StoreError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    _emit(summary, json_out, f"{dst}: image arrays {summary['image_bytes_before'] / 1e6:.1f} MB -> "
                             f"{summary['image_bytes_after'] / 1e6:.1f} MB ({codec}); verified")
