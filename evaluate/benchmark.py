"""`csvr ablate benchmark` (`make benchmark`): Table I measured with the power to separate its rows.

One pretraining run per seed; from each, every Table I row is fine-tuned under two protocols and scored on
the same test videos. Each protocol fine-tunes ONE network and changes only its initialisation:

- `pose_rgb`: the integrated f_i network (V-Network + pose encoder + AdaIN, `train.finetune` variant `fi`);
  a row's pretraining fills the groups it trained, the others start random (f_d: V-Network random; f_s:
  pose encoder random; f_i without the video branch: AdaIN layer random). The concat row keeps its own
  fusion layer (the row is about the fusion).
- `rgb`: the V-Network alone (variant `fs`), the network a user deploys without a pose estimator. Only
  rows whose pretraining changes the V-Network differ here: scratch, f_s (context stage) and full (joint
  stage); f_d leaves the V-Network random (= scratch) and f_i without the video branch has f_s's V-Network
  (= f_s), so those rows are not run twice.

Per row: mean and standard deviation over seeds of the video-level top-1. Per pair the paper orders
(`PAPER_ORDER`): the paired difference (b - a) over test videos and seeds with a 95% bootstrap interval
(seeds and videos resampled with replacement, the same draw for both rows), marked "holds" (interval
above 0), "reversed" (below 0) or "not separated". Every row's result is a file (`ROW/eval.json` with the
per-video hits); a rerun skips finished rows and resumes an interrupted fine-tune or pretraining.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from csvr.evaluate import paper

log = logging.getLogger(__name__)

# protocol -> {row key: fine-tuning variant (evaluate.ablation_runner.VARIANTS keys)}
PROTOCOLS: dict[str, dict[str, str]] = {
    "pose_rgb": {"scratch": "scratch", "f_d": "integrated", "f_s": "integrated", "f_i_adain": "integrated",
                 "f_i_concat": "concat", "full": "integrated"},
    "rgb": {"scratch": "scratch_rgb", "f_s": "video_only", "full": "video_only"},
}
PROTOCOL_TITLES = {"pose_rgb": "pose+RGB (the integrated f_i network)", "rgb": "RGB-only (the V-Network alone)",
                   "table_iv": "Table IV (f_s by contrastive loss; the V-Network alone)",
                   "table_v": "Table V (video-branch objectives; the f_i network)"}
# Tables IV and V (optional: each row pretrains the stages its setting changes, ~12 more min per seed here)
# keep the paper's own fine-tuning variant of every row
EXTRA_TABLES = {"table_iv": paper.TABLE_IV, "table_v": paper.TABLE_V}
# (a, b): the paper reports a < b (Table I)
PAPER_ORDER: tuple[tuple[str, str], ...] = (
    ("scratch", "f_s"), ("scratch", "f_d"), ("f_d", "f_i_concat"), ("f_s", "f_i_concat"),
    ("f_i_concat", "f_i_adain"), ("f_i_adain", "full"), ("scratch", "full"), ("f_s", "full"))
TABLE_ORDER: dict[str, tuple[tuple[str, str], ...]] = {
    "table_iv": (("l2", "infonce"), ("infonce", "mi_infonce"), ("l2", "mi_infonce")),
    "table_v": (("recon", "both"), ("pred", "both")),
}
BOOTSTRAP = 10000


def protocol_rows(protocol: str) -> list[paper.AblationRow]:
    """Table I's rows as `protocol` fine-tunes them (Tables IV / V: their rows as the paper fine-tunes them)."""
    if protocol in EXTRA_TABLES:
        return list(EXTRA_TABLES[protocol])
    variants = PROTOCOLS[protocol]
    return [dataclasses.replace(r, finetune_variant=variants[r.key]) for r in paper.TABLE_I if r.key in variants]


def paired_interval(hits_a: np.ndarray, hits_b: np.ndarray, rounds: int = BOOTSTRAP, seed: int = 0,
                    level: float = 0.95) -> dict[str, float]:
    """Mean of b - a over (seeds, videos) and its percentile bootstrap interval; hits are (S, V) 0/1 arrays
    of the same videos in the same order. Seeds and videos are resampled independently, with replacement."""
    a, b = np.asarray(hits_a, dtype=np.float64), np.asarray(hits_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"hits must be two (seeds, videos) arrays of one shape, got {a.shape} and {b.shape}")
    d = b - a
    s, v = d.shape
    rng = np.random.default_rng(seed)
    means = np.empty(rounds)
    for i in range(rounds):
        rows = rng.integers(0, s, s)
        cols = rng.integers(0, v, v)
        means[i] = d[np.ix_(rows, cols)].mean()
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"diff": float(d.mean()), "lo": float(lo), "hi": float(hi),
            "se_videos": float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")}


def verdict(interval: dict[str, float]) -> str:
    if interval["lo"] > 0:
        return "holds"
    if interval["hi"] < 0:
        return "reversed"
    return "not separated"


@dataclass
class Benchmark:
    """Runs (or resumes) every seed x protocol x row, then summarises (see module docstring)."""

    store: Path
    out_dir: Path
    seeds: list[int]
    pretrain_config: Path
    finetune_config: Path
    pretrain_overrides: tuple[str, ...] = ()
    finetune_overrides: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ("pose_rgb", "rgb")
    num_clips: int = 10
    device: str = "auto"
    num_workers: int | None = None
    echo: Callable[[str], None] = print
    seconds: dict[str, float] = field(default_factory=dict)
    # name -> regular expression on the store's video ids: each row is also summarised on the test videos
    # whose id matches (e.g. the demo's own test videos inside the benchmark's larger test split)
    subsets: dict[str, str] = field(default_factory=dict)

    def jobs(self) -> list[tuple[int, str, paper.AblationRow]]:
        return [(s, p, r) for s in self.seeds for p in self.protocols for r in protocol_rows(p)]

    def row_dir(self, seed: int, protocol: str, key: str) -> Path:
        return self.out_dir / f"seed{seed}" / protocol / key

    def _runner(self, seed: int) -> Any:
        from csvr.evaluate.ablation_runner import RowRunner

        return RowRunner(store=Path(self.store), pretrain_config=Path(self.pretrain_config),
                         finetune_config=Path(self.finetune_config), out_dir=self.out_dir / f"seed{seed}",
                         pretrain_overrides=(*self.pretrain_overrides, f"run.seed={seed}"),
                         finetune_overrides=(*self.finetune_overrides, f"run.seed={seed}"),
                         device=self.device, num_clips=self.num_clips, num_workers=self.num_workers,
                         random_missing=True)

    def run(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        jobs = self.jobs()
        todo = [j for j in jobs if not (self.row_dir(j[0], j[1], j[2].key) / "eval.json").is_file()]
        self.echo(f"benchmark: {len(jobs)} rows ({len(self.seeds)} seeds x {sum(len(protocol_rows(p)) for p in self.protocols)}"
                  f" rows), {len(jobs) - len(todo)} done, {len(todo)} to run -> {self.out_dir}")
        runners: dict[int, Any] = {}
        spent: list[float] = []
        for n, (seed, protocol, row) in enumerate(todo, 1):
            runner = runners.setdefault(seed, self._runner(seed))
            t1 = time.perf_counter()
            result = runner(row, self.row_dir(seed, protocol, row.key))
            spent.append(time.perf_counter() - t1)
            eta = np.median(spent) * (len(todo) - n)
            self.echo(f"[{n}/{len(todo)}] seed {seed} {protocol} {row.key}: video top-1 {100 * result['video']:.1f} "
                      f"({spent[-1]:.0f} s; elapsed {time.perf_counter() - t0:.0f} s, ETA {eta:.0f} s)")
        self.seconds["total"] = time.perf_counter() - t0
        return self.summary()

    def _hits(self, seed: int, protocol: str, key: str) -> tuple[np.ndarray, np.ndarray]:
        path = self.row_dir(seed, protocol, key) / "eval.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        pv = data.get("per_video")
        if not pv:
            raise ValueError(f"{path}: no per_video hits (written by an older csvr; delete the row folder to rerun it)")
        ids, hits = np.asarray(pv["ids"]), np.asarray(pv["correct"], dtype=np.int64)
        order = np.argsort(ids)
        return ids[order], hits[order]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seeds": self.seeds, "protocols": {}, "num_clips": self.num_clips,
                               "pretrain_config": str(self.pretrain_config), "finetune_config": str(self.finetune_config),
                               "pretrain_overrides": list(self.pretrain_overrides),
                               "finetune_overrides": list(self.finetune_overrides), "bootstrap_rounds": BOOTSTRAP}
        for protocol in self.protocols:
            keys = [r.key for r in protocol_rows(protocol)]
            hits: dict[str, np.ndarray] = {}
            ids_ref = None
            for key in keys:
                per_seed = []
                for seed in self.seeds:
                    ids, h = self._hits(seed, protocol, key)
                    if ids_ref is None:
                        ids_ref = ids
                    elif not np.array_equal(ids, ids_ref):
                        raise ValueError(f"{self.row_dir(seed, protocol, key)}: scored other test videos than the "
                                         "first row (a different store or split?)")
                    per_seed.append(h)
                hits[key] = np.stack(per_seed)
            masks = self._subset_masks(ids_ref)
            rows = {}
            for r in protocol_rows(protocol):
                rows[r.key] = {"label": r.label, **seed_stats(hits[r.key]), "paper_ucf101": r.paper.get("ucf101"),
                               "subsets": {name: seed_stats(hits[r.key][:, m]) for name, m in masks.items()}}
            pairs = []
            for a, b in TABLE_ORDER.get(protocol, PAPER_ORDER):
                if a in hits and b in hits:
                    iv = {k: 100 * v for k, v in paired_interval(hits[a], hits[b]).items()}
                    pairs.append({"a": a, "b": b, **iv, "verdict": verdict(iv)})
            out["protocols"][protocol] = {"title": PROTOCOL_TITLES[protocol], "rows": rows, "pairs": pairs,
                                          "num_test_videos": int(len(ids_ref)),
                                          "subsets": {name: {"pattern": self.subsets[name], "num_videos": int(m.sum())}
                                                      for name, m in masks.items()}}
        return out

    def _subset_masks(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """name -> boolean mask over the scored video-table rows whose video id matches the subset's pattern."""
        if not self.subsets:
            return {}
        from csvr.contracts import open_store

        names = np.asarray([str(v) for v in open_store(self.store)["videos/id"][...]])
        masks = {}
        for name, pattern in self.subsets.items():
            m = np.asarray([re.search(pattern, str(v)) is not None for v in names[rows]])
            if not m.any():
                raise ValueError(f"subset {name!r}: no scored test video of {self.store} has an id matching {pattern!r}")
            masks[name] = m
        return masks


def seed_stats(hits: np.ndarray) -> dict[str, Any]:
    """Video top-1 (%) per seed of a (seeds, videos) 0/1 array: mean, std (ddof 1), min, max, per_seed."""
    acc = 100 * np.asarray(hits, dtype=np.float64).mean(axis=1)
    return {"mean": float(acc.mean()), "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "min": float(acc.min()), "max": float(acc.max()), "per_seed": acc.tolist()}


def machine() -> dict[str, Any]:
    import os

    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True, cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"commit": commit, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version()}


def benchmark_markdown(summary: dict[str, Any], command: str) -> str:
    """benchmark.md: per protocol the rows (mean, std, range over seeds) and the paired verdicts."""
    m = summary.get("machine", {})
    lines = ["# Table I benchmark", "",
             f"Command: `{command}`  ", f"Commit {m.get('commit')}, {m.get('cores')} cores ({m.get('cpu')}), "
             f"torch {m.get('torch')}; seeds {summary['seeds']}; {summary['num_clips']} clips per test video; "
             f"{summary.get('seconds', {}).get('total', 0):.0f} s for the rows run in the last call.", "",
             "Video-level top-1 (%) on the test split; mean and standard deviation over seeds, [min, max]. "
             "Pairs: the paired difference b - a over test videos and seeds with a 95% bootstrap interval "
             f"({summary['bootstrap_rounds']} rounds); 'holds' = the paper's order a < b is shown, "
             "'reversed' = b < a is shown, 'not separated' = the interval contains 0.", ""]
    for protocol, p in summary["protocols"].items():
        subsets = p.get("subsets", {})
        lines += [f"## Protocol {p['title']}: {p['num_test_videos']} test videos", ""]
        lines += [f"Column `{n}`: the same runs scored on the {s['num_videos']} test videos whose id matches "
                  f"`{s['pattern']}`, mean [min, max] over seeds." for n, s in subsets.items()]
        lines += [""] if subsets else []
        lines += ["| row | top-1 mean | std | range | " + "".join(f"{n} | " for n in subsets) + "paper (UCF101) |",
                  "|---|---|---|---|" + "---|" * len(subsets) + "---|"]
        for r in p["rows"].values():
            sub = "".join(f"{q['mean']:.1f} [{q['min']:.1f}, {q['max']:.1f}] | "
                          for q in (r["subsets"][n] for n in subsets))
            lines.append(f"| {r['label']} | {r['mean']:.1f} | {r['std']:.1f} | [{r['min']:.1f}, {r['max']:.1f}] | "
                         f"{sub}{r['paper_ucf101']} |")
        lines += ["", "| paper order | b - a | 95% interval | verdict |", "|---|---|---|---|"]
        for q in p["pairs"]:
            lines.append(f"| {q['a']} < {q['b']} | {q['diff']:+.1f} | [{q['lo']:+.1f}, {q['hi']:+.1f}] | {q['verdict']} |")
        lines.append("")
    return "\n".join(lines)
