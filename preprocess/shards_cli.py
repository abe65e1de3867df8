"""``csvr shards info|ls|show|verify|preview STORE``: inspect a csvr-store/1 store (``--json PATH`` or
``--json -`` for machines)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import click
import numpy as np

from csvr.cli import is_stdout, json_option, progress_disabled, write_json
from csvr.contracts import COCO_EDGES, STORED_STATUSES
from preprocess.schema import (FRAME_ARRAYS, IFRAME_ARRAYS, SCHEMA, VIDEO_COLUMNS, StoreError, read_table,
                               table_sha256)



def _open(store: str, allow_incomplete: bool = True):
    from preprocess.schema import open_store

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
    from preprocess.store import FS

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


def _rows(lo: int, hi: int) -> str:
    return f"row {lo}" if hi - lo == 1 else f"rows {lo}..{hi - 1}"


def _videos_in(t: dict | None, family: str, lo: int, hi: int) -> str:
    """Ids of the videos whose frame (or I-frame) rows overlap [lo, hi), for problem lines."""
    if t is None:
        return "videos unknown: per-video table unreadable"
    try:
        start, count = ((t["frame_start"], t["num_frames"]) if family == "frames"
                        else (t["iframe_start"], t["num_iframes"]))
        hit = [str(t["id"][k]) for k in range(len(t["id"]))
               if t["status"][k] in STORED_STATUSES and int(count[k]) and int(start[k]) < hi
               and int(start[k]) + int(count[k]) > lo]
    except Exception as exc:
        return f"videos unknown: {type(exc).__name__}: {exc}"
    if not hit:
        return "no video"
    shown = ", ".join(hit[:8]) + (f", ... ({len(hit)} in all)" if len(hit) > 8 else "")
    return f"video{'s' if len(hit) > 1 else ''} {shown}"


def _bad_ranges(a, lo: int, hi: int) -> list[tuple[int, int, str]]:
    """Read [lo, hi) chunk by chunk: the (lo, hi, error) of each chunk that does not decode."""
    step = a.chunks[0] or (hi - lo)
    bad: list[tuple[int, int, str]] = []
    for c in range(lo, hi, step):
        ce = min(hi, c + step)
        try:
            a[c:ce]
        except Exception as exc:
            err = f"{type(exc).__name__}: {exc}"
            if bad and bad[-1][1] == c and bad[-1][2] == err:
                bad[-1] = (bad[-1][0], ce, err)
            else:
                bad.append((c, ce, err))
    return bad


def _num_shards(group, name: str) -> int:
    try:
        a = group[name]
        rows = (a.shards or a.chunks)[0]
        return math.ceil(a.shape[0] / rows) if a.shape[0] else 0
    except Exception:  # reported by verify_store itself
        return 0


def verify_store(store: str, progress: bool = False) -> tuple[list[str], dict]:
    """Every check of ``verify``: returns (problems, stats). Reads every chunk of every array;
    ``progress``: a tqdm bar per shard on stderr.

    Never raises on a damaged store: every decode failure becomes a problem line naming the array, the
    shard file and the rows (and videos) it covers.
    """
    problems: list[str] = []
    notes: list[str] = []
    try:
        group = _open(store, allow_incomplete=True)
    except click.ClickException as exc:
        return [exc.message], {}
    stats: dict = {"shards_checked": 0, "rows_read": 0, "notes": notes}
    try:
        fs = _fs(store)
        attrs = dict(group.attrs)
    except Exception as exc:
        return [f"store attributes unreadable: {type(exc).__name__}: {exc}"], stats
    if attrs.get("schema") != SCHEMA:
        problems.append(f"schema is {attrs.get('schema')!r}, expected {SCHEMA!r}")
    if not attrs.get("complete"):
        problems.append("store is not marked complete")
    from preprocess.store import shard_key

    # the table first (small), so that decode failures can name the videos they hit
    t: dict | None = None
    try:
        t = read_table(group)
    except Exception as exc:
        problems.append(f"per-video table unreadable: {type(exc).__name__}: {exc}")
    if t is not None:
        want = attrs.get("table_sha256")
        if want is None:
            notes.append("per-video table: no table checksum recorded (store predates it); not checked")
        else:
            try:
                got = table_sha256(t)
            except Exception as exc:
                got = f"unhashable ({type(exc).__name__}: {exc})"
            if got != want:
                problems.append(f"per-video table: checksum mismatch (recorded {str(want)[:12]}, found "
                                f"{got[:12]}): labels, splits, paths or offsets changed since it was written")

    undecodable: set[str] = set()
    from tqdm import tqdm

    bar = tqdm(total=sum(_num_shards(group, n) for n in (*FRAME_ARRAYS, *IFRAME_ARRAYS)), desc="verify",
               unit="shard", leave=False, disable=not progress)
    for name in (*FRAME_ARRAYS, *IFRAME_ARRAYS):
        bar.set_postfix_str(name, refresh=False)
        family = "frames" if name in FRAME_ARRAYS else "iframes"
        try:
            a = group[name]
            sums = a.attrs.get("shard_sha256", {})
            rows = (a.shards or a.chunks)[0]
            n_shards = math.ceil(a.shape[0] / rows) if a.shape[0] else 0
        except Exception as exc:
            problems.append(f"missing array {name}" if isinstance(exc, KeyError)
                            else f"{name}: array unreadable: {type(exc).__name__}: {exc}")
            undecodable.add(name)
            continue
        for k in range(n_shards):
            key = shard_key(name, k, a.ndim)
            lo, hi = k * rows, min(a.shape[0], (k + 1) * rows)
            want = sums.get(str(k))
            try:
                got = "absent" if not fs.exists(key) else hashlib.sha256(fs.read_bytes(key)).hexdigest()
            except Exception as exc:
                got = f"unreadable ({type(exc).__name__}: {exc})"
            stats["shards_checked"] += 1
            if want is None:
                problems.append(f"{name}: shard {k} ({key}) has no recorded checksum")
            elif want != got:
                problems.append(f"{name}: shard {k} ({key}) checksum mismatch "
                                f"(recorded {want[:12]}, found {got[:12]}), {_rows(lo, hi)} "
                                f"({_videos_in(t, family, lo, hi)})")
            try:
                a[lo:hi]
                stats["rows_read"] += hi - lo
            except Exception as exc:  # any decode failure of a chunk is a problem to report
                undecodable.add(name)
                bad = _bad_ranges(a, lo, hi) or [(lo, hi, f"{type(exc).__name__}: {exc}")]
                stats["rows_read"] += (hi - lo) - sum(e - b for b, e, _ in bad)
                for b, e, err in bad:
                    problems.append(f"{name}: shard {k} ({key}) cannot be decoded: {_rows(b, e)} "
                                    f"({_videos_in(t, family, b, e)}): {err}")
            bar.update(1)
    bar.close()
    if t is not None:
        try:
            problems += _check_table(group, t, skip=undecodable)
        except Exception as exc:  # a damaged store must give a problem list, never a traceback
            problems.append(f"table/array consistency check failed: {type(exc).__name__}: {exc}")
    return problems, stats


def _check_table(group, t, skip: set[str] = frozenset()) -> list[str]:
    """Table/array consistency: offsets, counts, failed rows, index ranges, value ranges.

    Value checks of the arrays in ``skip`` (already reported as undecodable) are left out.
    """
    p: list[str] = []
    F, I = group["frames"].shape[0], group["iframes/images"].shape[0]
    n = len(t["id"])
    for c, v in t.items():
        if len(v) != n:
            p.append(f"videos/{c} has {len(v)} rows, expected {n}")
    if p:
        return p
    for name in FRAME_ARRAYS:
        if group[name].shape[0] != F:
            p.append(f"{name} has {group[name].shape[0]} rows, frames has {F}")
    for name in IFRAME_ARRAYS:
        if group[name].shape[0] != I:
            p.append(f"{name} has {group[name].shape[0]} rows, iframes/images has {I}")
    pos, ipos = 0, 0
    fidx = None if "iframes/frame_index" in skip else group["iframes/frame_index"][:]
    sidx = None if "iframes/source_index" in skip else group["iframes/source_index"][:]
    for k in range(n):
        vid, nf, ni = t["id"][k], int(t["num_frames"][k]), int(t["num_iframes"][k])
        if t["status"][k] in STORED_STATUSES:
            if nf <= 0:
                p.append(f"video {vid}: status ok but num_frames={nf}")
            if int(t["frame_start"][k]) != pos:
                p.append(f"video {vid}: frame_start {t['frame_start'][k]} != expected {pos}")
            if int(t["iframe_start"][k]) != ipos:
                p.append(f"video {vid}: iframe_start {t['iframe_start'][k]} != expected {ipos}")
            f = fidx[ipos:ipos + ni] if fidx is not None else ()
            if len(f) and (f.min() < 0 or f.max() >= nf):
                p.append(f"video {vid}: I-frame frame_index outside [0, {nf})")
            if sidx is not None and len(sidx[ipos:ipos + ni]) > 1 and np.any(np.diff(sidx[ipos:ipos + ni]) < 0):
                p.append(f"video {vid}: I-frame source_index not sorted")
            pos += nf
            ipos += ni
        elif t["status"][k] == "failed":
            if nf or ni:
                p.append(f"video {vid}: failed but has {nf} frames / {ni} I-frames")
            if not t["reason"][k]:
                p.append(f"video {vid}: failed without a reason")
        else:
            p.append(f"video {vid}: unknown status {t['status'][k]!r}")
    if pos != F:
        p.append(f"table counts {pos} frames, arrays hold {F}")
    if ipos != I:
        p.append(f"table counts {ipos} I-frames, arrays hold {I}")
    P = group["poses/keypoints"].shape[1]
    main = None if "poses/main_actor" in skip else group["poses/main_actor"][:]
    if main is not None and len(main) and (main.min() < -1 or main.max() >= P):
        p.append(f"poses/main_actor outside [-1, {P})")
    kp = group["poses/keypoints"]
    for s in range(0, F if "poses/keypoints" not in skip else 0, 65536):
        block = kp[s:s + 65536].astype(np.float32)
        if not np.isfinite(block).all() or block.min() < -1e-3 or block.max() > 1 + 1e-3:
            p.append(f"poses/keypoints rows {s}..{s + len(block)} hold values outside [0, 1]")
    return p


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
