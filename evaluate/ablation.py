"""Running the paper's ablation tables: one row = one pretraining variant + one fine-tuning variant.

`run_ablation` walks the rows of the requested tables, calls `run_row` (the callable that pretrains and
fine-tunes one row and returns its test top-1) for each distinct row configuration, saves results
after every row (so a killed ablation resumes where it stopped), and writes one Markdown file with
our numbers beside the paper's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from csvr.contracts import atomic_write_text
from csvr.evaluate import paper
from csvr.evaluate.markdown import ablation_markdown

log = logging.getLogger(__name__)

RunRow = Callable[[paper.AblationRow, Path], "float | Mapping[str, float]"]
"""Pretrain (per `row.pretrain`) and fine-tune (per `row.finetune_variant`) into the given folder;
return the test top-1 as a fraction, or several named ones (e.g. {"clip": .., "video": ..}), stored
as columns `<dataset> <name>`."""


def _columns(dataset: str, value: float | Mapping[str, float]) -> dict[str, float]:
    if isinstance(value, Mapping):
        return {f"{dataset} {k}": float(v) for k, v in value.items()}
    return {dataset: float(value)}


def _done(vals: Mapping[str, float], dataset: str) -> dict[str, float]:
    """The result columns of `dataset` already in a row's results ({} when the row has not run)."""
    return {k: v for k, v in vals.items() if k == dataset or k.startswith(dataset + " ")}


def row_signature(row: paper.AblationRow) -> str:
    """Identical configurations across tables (Table I `full` = Table V `both`, Table I `f_s` =
    Table IV `mi_infonce`) share one signature and are run once."""
    return json.dumps({"pretrain": paper.resolved_pretrain(row), "finetune": row.finetune_variant}, sort_keys=True)


def load_results(path: str | Path) -> dict[str, dict[str, dict[str, float]]]:
    """Read an ablation results file: {table: {row key: {dataset: top-1}}}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read ablation results ({e})") from e
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected {{table: {{row: {{dataset: top1}}}}}}")
    for table, rows in data.items():
        paper.ablation_rows(table)  # raises on an unknown table
        for row, vals in rows.items():
            if not isinstance(vals, dict):
                raise ValueError(f"{path}: table {table} row {row!r} must map dataset -> top-1")
    return data


def ablation_report(results: Mapping[str, Mapping[str, Mapping[str, float | None]]]) -> str:
    """All result tables as one Markdown document (our numbers beside the paper's)."""
    parts = ["# Ablations: ours next to the paper", ""]
    for table in results:
        parts += [ablation_markdown(table, results[table]), ""]
    return "\n".join(parts).rstrip() + "\n"


def select_rows(tables: Sequence[str], keys: str) -> dict[str, list[str]]:
    """`rows` for `run_ablation` from comma-separated row keys: each table keeps the keys it has; a key that
    no requested table has is an error naming the keys there are."""
    wanted = [k.strip() for k in keys.split(",") if k.strip()]
    have = {t.upper(): [r.key for r in paper.ablation_rows(t)] for t in tables}
    unknown = [k for k in wanted if not any(k in v for v in have.values())]
    if unknown or not wanted:
        known = ", ".join(k for v in have.values() for k in v)
        raise ValueError(f"unknown ablation row(s) {', '.join(unknown) or repr(keys)} for table(s) "
                         f"{', '.join(have)}; rows: {known}")
    return {t: [k for k in v if k in wanted] for t, v in have.items()}


def run_ablation(
    tables: Sequence[str],
    out_dir: str | Path,
    dataset: str,
    run_row: RunRow,
    rows: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Run the rows of `tables` (optionally only `rows[table]` keys) and write results.json + ablation.md.

    Each distinct configuration runs once in `out_dir/<row key>/`; finished rows found in
    `out_dir/results.json` are not run again.
    """
    tables = [t.upper() for t in tables]
    for t in tables:
        paper.ablation_rows(t)  # unknown table -> clear error before any work
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.json"
    results: dict[str, dict[str, dict[str, float]]] = load_results(results_path) if results_path.is_file() else {}
    by_signature: dict[str, dict[str, float]] = {}
    for table in tables:
        for row in paper.ablation_rows(table):
            done = _done(results.get(table, {}).get(row.key, {}), dataset)
            if done:
                by_signature[row_signature(row)] = done
    todo = [(table, row) for table in tables for row in paper.ablation_rows(table)
            if not (rows and table in rows) or row.key in set(rows[table])]
    from tqdm import tqdm  # one step per row, on stderr; TQDM_DISABLE (csvr -q) hides it

    for table, row in tqdm(todo, desc="ablation", unit="row", dynamic_ncols=True):
        sig = row_signature(row)
        if sig not in by_signature:
            log.info("ablation table %s row %s: running", table, row.key)
            by_signature[sig] = _columns(dataset, run_row(row, out_dir / row.key))
        else:
            log.info("ablation table %s row %s: reusing result", table, row.key)
        results.setdefault(table, {}).setdefault(row.key, {}).update(by_signature[sig])
        atomic_write_text(results_path, json.dumps(results, indent=2) + "\n")  # a resume reads it back
    md = out_dir / "ablation.md"
    md.write_text(ablation_report(results), encoding="utf-8")
    return {"results": results, "results_path": results_path, "markdown": md}
