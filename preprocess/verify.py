"""Store verification (`csvr shards verify`): read every chunk of every array, check the recorded checksums and
sizes and the consistency of the tables with the arrays; every problem names the array, shard file, rows and videos."""

from __future__ import annotations

import math

import numpy as np

from csvr.contracts import STORED_STATUSES
from csvr.preprocess.schema import (FRAME_ARRAYS, IFRAME_ARRAYS, SCHEMA, StoreError, open_store, read_table,
                                    table_sha256)
from csvr.preprocess.store import FS, sha256_or_absent


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
        group = open_store(store, allow_incomplete=True)
    except StoreError as exc:
        return [str(exc)], {}
    stats: dict = {"shards_checked": 0, "rows_read": 0, "notes": notes}
    try:
        fs = FS(store)
        attrs = dict(group.attrs)
    except Exception as exc:
        return [f"store attributes unreadable: {type(exc).__name__}: {exc}"], stats
    if attrs.get("schema") != SCHEMA:
        problems.append(f"schema is {attrs.get('schema')!r}, expected {SCHEMA!r}")
    if not attrs.get("complete"):
        problems.append("store is not marked complete")
    from csvr.preprocess.store import shard_key

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
                got = sha256_or_absent(fs, key)
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
