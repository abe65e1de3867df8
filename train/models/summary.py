"""Parameter counts and FLOPs of every registered backbone at 16x112x112, next to the paper's Table IX.

``python -m csvr.train.models.summary [--frames 16 --size 112 --json out.json]``. FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode``, which counts a multiply-add as 2 FLOPs; GMACs = GFLOPs / 2.
Video-analysis papers (and torchvision's model tables, via fvcore) usually report GMACs under the name
"GFLOPs".
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click
import torch
from torch.utils.flop_counter import FlopCounterMode

from csvr.train.models.backbones import BACKBONES, build_backbone

log = logging.getLogger(__name__)

#: Table IX of the paper (CSVR rows; MoCo/CoCLR/SpeedNet rows for the same backbones in brackets)
PAPER_TABLE_IX = {
    "c3d": {"params_m": 33.4, "gflops": "40.4 (MoCo: 38.7)"},
    "s3d": {"params_m": 9.1, "gflops": "37.7 (CoCLR 36.0, SpeedNet 36.5)"},
    "r2plus1d_18": {"params_m": 15.4, "gflops": "40.4"},
}


def measure(name: str, frames: int = 16, size: int = 112) -> dict:
    """Inference parameters (no head) and FLOPs of one forward pass of batch 1 (on the meta device:
    shapes only, no arithmetic, so it takes seconds)."""
    with torch.device("meta"):
        model = build_backbone(name).eval()
        x = torch.zeros(1, 3, size, size) if model.input_dims == 2 else torch.zeros(1, 3, frames, size, size)
    params = sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.forward_pooled(x)
    flops = counter.get_total_flops()
    return {"backbone": name, "params_m": params / 1e6, "gflops": flops / 1e9, "gmacs": flops / 2e9,
            "input": list(x.shape[1:])}


def measure_downstream(backbone: str, frames: int = 16, size: int = 112) -> dict:
    """The CSVR fine-tuning network `train.finetune.DownstreamNet` of variant ``fi`` with the default
    `ModelConfig` (V-Network + g^V + pose encoder + aligner + AdaIN + dropout + fc), as fine-tuned."""
    from csvr.train.config import ModelConfig
    from csvr.train.finetune import DownstreamNet

    with torch.device("meta"):
        model = DownstreamNet(ModelConfig(backbone=backbone), "fi", 101, 0.3).eval()
        clip, pose = torch.zeros(2, 3, frames, size, size), torch.zeros(2, frames, 17, 2)
    params = sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(clip, pose)  # batch 2, FLOPs halved below
    flops = counter.get_total_flops() / 2
    return {"backbone": f"csvr f_i ({backbone}, 101 classes)", "params_m": params / 1e6, "gflops": flops / 1e9,
            "gmacs": flops / 2e9, "input": [3, frames, size, size]}


def table(rows: list[dict]) -> str:
    lines = ["| backbone | input | params (M) | GFLOPs (2/MAC) | GMACs | paper params (M) | paper GFLOPs |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        key = r["backbone"].split("(")[-1].split(",")[0] if r["backbone"].startswith("csvr") else r["backbone"]
        p = PAPER_TABLE_IX.get(key, {})
        lines.append(
            f"| {r['backbone']} | {'x'.join(map(str, r['input']))} | {r['params_m']:.2f} | {r['gflops']:.1f} | "
            f"{r['gmacs']:.1f} | {p.get('params_m', '-')} | {p.get('gflops', '-')} |"
        )
    return "\n".join(lines)


@click.command()
@click.option("--frames", default=16, show_default=True)
@click.option("--size", default=112, show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="also write rows as JSON")
def main(frames: int, size: int, json_path: Path | None) -> None:
    """Print the parameter/FLOPs table for every backbone."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = [measure(n, frames, size) for n in sorted(BACKBONES)]
    rows += [measure_downstream(n, frames, size) for n in ("c3d", "s3d", "r2plus1d_18")]
    click.echo(table(rows))
    if json_path:
        json_path.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
