"""Training logs: read the JSONL records the trainers write and turn them into per-key series (docs/evaluation.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from csvr.contracts import read_jsonl

RESERVED_LOG_KEYS = frozenset({"step", "stage", "epoch", "time", "wall_time", "event", "split"})
NONFINITE_STRINGS = frozenset({"nan", "inf", "-inf", "+inf", "infinity", "-infinity"})


def _log_record_problem(rec: dict[str, Any]) -> str | None:
    if not isinstance(rec.get("step"), int) or isinstance(rec.get("step"), bool):
        return "missing or non-integer 'step'"
    if not isinstance(rec.get("stage"), str):
        return "missing or non-string 'stage'"
    return None


def read_jsonl_log(path: str | Path) -> list[dict[str, Any]]:
    """Read a training log (``csvr.contracts.read_jsonl``): one JSON object per line with int `step` and
    str `stage`. Blank lines are skipped; a malformed LAST line (a run killed mid-write) is dropped with a
    warning; a malformed line elsewhere is an error naming the file and line.
    """
    return read_jsonl(path, check=_log_record_problem)


def log_series(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Numeric series per key and stage: {key: {stage: (steps, values)}}; non-numeric keys ignored.

    Non-finite values are kept (as NaN/Inf) so GAN blow-ups stay visible rather than hidden.
    """
    acc: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for rec in records:
        if "event" in rec:
            # event records (e.g. {"event": "non_finite_loss", "term": "loss/pose_l2", "value": "nan"})
            # mark their term at that step, so the blow-up shows on the right panel
            if isinstance(rec.get("term"), str):
                steps, vals = acc.setdefault(rec["term"], {}).setdefault(rec["stage"], ([], []))
                steps.append(rec["step"])
                vals.append(_as_float(rec.get("value")))
            continue
        for key, val in rec.items():
            if isinstance(val, str) and val.strip().lower() in NONFINITE_STRINGS:
                val = float(val.strip().lower().replace("infinity", "inf"))  # the trainer writes NaN/Inf as strings
            if key in RESERVED_LOG_KEYS or isinstance(val, bool) or not isinstance(val, (int, float)):
                continue
            steps, vals = acc.setdefault(key, {}).setdefault(rec["stage"], ([], []))
            steps.append(rec["step"])
            vals.append(float(val))
    return {k: {s: (np.asarray(st), np.asarray(v)) for s, (st, v) in d.items()} for k, d in acc.items()}


def _as_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")
