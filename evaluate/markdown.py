"""Markdown tables: number formatting, generic tables and the paper's ablation tables with our numbers beside them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from csvr.evaluate import paper


def fmt(v: Any, scale: float = 100.0, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{float(v) * scale:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table (cells converted with str)."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def ablation_markdown(
    table: str,
    ours: Mapping[str, Mapping[str, float | None]],
    datasets: Sequence[str] | None = None,
    paper_datasets: Sequence[str] | None = None,
) -> str:
    """An ablation table (paper Table I/III/IV/V) with our top-1 (fractions, printed in %) beside the
    paper's. `ours`: {row key: {dataset: top-1}}; rows we did not run show '–'. Unknown row keys raise."""
    rows = paper.ablation_rows(table)
    known = {r.key for r in rows}
    unknown = set(ours) - known
    if unknown:
        raise ValueError(f"table {table}: unknown row keys {sorted(unknown)} (known: {sorted(known)})")
    if datasets is None:
        datasets = sorted({d for v in ours.values() for d in v})
    if paper_datasets is None:
        paper_datasets = list(rows[0].paper)
    header = ["Row"] + [f"ours {d}" for d in datasets] + [f"paper {d}" for d in paper_datasets]
    body = []
    for r in rows:
        mine = ours.get(r.key, {})
        body.append([r.label] + [fmt(mine.get(d)) for d in datasets]
                    + [fmt(r.paper.get(d), scale=1.0) for d in paper_datasets])
    text = f"**{paper.TABLE_TITLES[table.upper()]}** (top-1 %)\n\n" + markdown_table(header, body)
    if table.upper() in paper.TABLE_NOTES:
        text += f"\n\n*Note: {paper.TABLE_NOTES[table.upper()]}*"
    return text
