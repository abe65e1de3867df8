"""Two-process gloo data-parallel runs on CPU: gradient-preserving gathers and a staged pretraining run."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from train_testdata import FAST, TINY_PRETRAIN, stage_list, train_store  # noqa: F401  (fixture)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, world: int, port: int) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)


def _gather_worker(rank: int, world: int, port: int, out: str) -> None:
    _env(rank, world, port)
    from train import losses
    from train.distributed import gather_with_grad, init_from_env, shutdown

    init_from_env("cpu")
    g = torch.Generator().manual_seed(0)
    x_all = torch.randn(world * 3, 8, generator=g)
    z_all = torch.randn(world * 3, 2, 8, generator=g)
    x = x_all[rank * 3:(rank + 1) * 3].clone().requires_grad_(True)
    z = z_all[rank * 3:(rank + 1) * 3].clone().requires_grad_(True)
    loss = losses.mi_infonce(gather_with_grad(x), gather_with_grad(z), temperature=0.5)
    loss.backward()
    torch.save({"loss": loss.detach(), "gx": x.grad, "gz": z.grad}, Path(out) / f"rank{rank}.pt")
    shutdown()


def test_gather_with_grad_matches_single_process_gradient(tmp_path):
    from train import losses

    world = 2
    mp.spawn(_gather_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    g = torch.Generator().manual_seed(0)
    x_all = torch.randn(world * 3, 8, generator=g).requires_grad_(True)
    z_all = torch.randn(world * 3, 2, 8, generator=g).requires_grad_(True)
    ref = losses.mi_infonce(x_all, z_all, temperature=0.5)
    ref.backward()
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.allclose(got["loss"], ref.detach(), atol=1e-6)
        # every rank computes the global loss; backward sums the slices over ranks, DDP then averages
        # parameter gradients over ranks, which gives back exactly the single-process gradient
        assert torch.allclose(got["gx"] / world, x_all.grad[rank * 3:(rank + 1) * 3], atol=1e-6)
        assert torch.allclose(got["gz"] / world, z_all.grad[rank * 3:(rank + 1) * 3], atol=1e-6)


def _pretrain_worker(rank: int, world: int, port: int, store: str, run: str) -> None:
    _env(rank, world, port)
    from train.config import PretrainConfig, load_config
    from train.distributed import shutdown
    from train.pretrain import pretrain

    cfg = load_config(PretrainConfig, TINY_PRETRAIN, FAST + ("batch_size=2",) + tuple(stage_list(pose=2, context=2)))
    seen = []
    pretrain(cfg, store, run, step_hook=lambda stage, step: seen.append((stage, step)))
    (Path(run) / f"steps_rank{rank}.json").write_text(json.dumps(seen))
    shutdown()


def test_two_process_gloo_pretraining(train_store, tmp_path):
    from train import checkpoint as ckpt

    world, run = 2, tmp_path / "run"
    mp.spawn(_pretrain_worker, args=(world, _free_port(), str(train_store), str(run)), nprocs=world, join=True)
    final = ckpt.load(run / "checkpoints" / "final.pt")
    assert final["trained_groups"] == ["vnet", "inet", "head_v", "head_i"]
    for rank in range(world):
        assert json.loads((run / f"steps_rank{rank}.json").read_text()) == [
            ["pose", 1], ["pose", 2], ["context", 1], ["context", 2]]
    # rank 0 alone logs: one record per step, with the global batch in samples/s terms
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in records] == [("pose", 1), ("pose", 2), ("context", 1), ("context", 2)]
    assert all(r["samples_per_s"] > 0 and 0 <= r["data_wait_frac"] <= 1 for r in records)
    assert "loss/context" in records[-1] and "grad_norm/vnet" in records[-1]
    cfg = (run / "config.yaml").read_text()
    assert "world_size: 2" in cfg
