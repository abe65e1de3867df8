"""metrics.json: the evaluation's one output file (schema `csvr-metrics/1`), written atomically and checked on read."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from csvr.contracts import atomic_write_text

METRICS_SCHEMA = "csvr-metrics/1"


def load_metrics(path: str | Path) -> dict[str, Any]:
    """Read and check a metrics.json (schema `csvr-metrics/1`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot read metrics ({e})") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from e
    if not isinstance(data, dict) or data.get("schema") != METRICS_SCHEMA:
        raise ValueError(f"{path}: not a {METRICS_SCHEMA} metrics file (schema={data.get('schema') if isinstance(data, dict) else None!r})")
    return data


def write_metrics(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write metrics.json (adds the schema tag; NaN written as null)."""
    def clean(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, np.ndarray):
            return clean(v.tolist())
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    data = {"schema": METRICS_SCHEMA, **clean(dict(metrics))}
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
