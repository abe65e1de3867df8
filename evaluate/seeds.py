"""Ablation results over seeds: per row, the mean and the range of each column (`csvr ablate seeds`).

A single seeded run is reproducible on one machine, not across machines (threading, BLAS and codec
builds change the floating-point order), so claims are made from several seeds: the table gives each
row's mean, min and max, and the ordering of two rows is called separated only when their ranges do
not overlap.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from csvr.evaluate import paper


def load_seed_results(paths: list[Path]) -> list[dict[str, Any]]:
    """The `results.json` of each seed's ablation run; a missing or unreadable file is an error naming it."""
    out = []
    for p in paths:
        try:
            out.append(json.loads(Path(p).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{p}: not a readable ablation results.json ({exc})") from exc
    return out


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """{table: {row: {column: {mean, min, max, n, values}}}} over the runs that have the row and column."""
    summary: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for res in results:
        for table, rows in res.items():
            for row, cols in rows.items():
                for col, v in cols.items():
                    summary.setdefault(table, {}).setdefault(row, {}).setdefault(col, {"values": []})["values"].append(
                        float(v))
    for rows in summary.values():
        for cols in rows.values():
            for stat in cols.values():
                vals = stat["values"]
                stat.update(mean=statistics.fmean(vals), min=min(vals), max=max(vals), n=len(vals))
    return summary


def separated(a: dict[str, float], b: dict[str, float]) -> bool:
    """True when two rows' ranges over seeds do not overlap (the only ordering this table supports)."""
    return a["min"] > b["max"] or b["min"] > a["max"]


def seeds_markdown(summary: dict[str, Any], seeds: list[str]) -> str:
    """One table per ablation table: mean [min, max] per row and column, in percent."""
    lines = [f"# Ablation over {len(seeds)} seeds ({', '.join(seeds)})", "",
             "Mean [min, max] over seeds, top-1 in %. Two rows are ordered only where their ranges do not overlap.",
             ""]
    for table, rows in summary.items():
        cols = sorted({c for r in rows.values() for c in r})
        lines += [f"## Table {table}", "", "| row | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        order = [r.key for r in paper.ABLATION_TABLES.get(table, ()) if r.key in rows]
        for row in order + [r for r in rows if r not in order]:
            cells = []
            for c in cols:
                s = rows[row].get(c)
                cells.append("-" if s is None else
                             f"{100 * s['mean']:.1f} [{100 * s['min']:.1f}, {100 * s['max']:.1f}]"
                             + ("" if s["n"] == len(seeds) else f" (n={s['n']})"))
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        key = next((c for c in cols if c.endswith("video")), cols[0])
        ranked = sorted(rows, key=lambda r: -rows[r].get(key, {"mean": -1.0})["mean"])
        pairs = [f"{a} > {b}" for i, a in enumerate(ranked) for b in ranked[i + 1:]
                 if key in rows[a] and key in rows[b] and separated(rows[a][key], rows[b][key])]
        lines += ["", f"Separated on `{key}` (ranges do not overlap): " + ("; ".join(pairs) or "none"), ""]
    return "\n".join(lines)
