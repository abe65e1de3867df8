"""Two-process gloo data-parallel runs on CPU: gradient-preserving gathers and a staged pretraining run."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from train_testdata import FAST, TINY_FINETUNE, TINY_PRETRAIN, stage_list, train_store  # noqa: F401  (fixture)


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
    from csvr.train import losses
    from csvr.train.distributed import gather_with_grad, init_from_env, shutdown

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
    from csvr.train import losses

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
    from csvr.train.config import PretrainConfig, load_config
    from csvr.train.distributed import shutdown
    from csvr.train.pretrain import pretrain

    cfg = load_config(PretrainConfig, TINY_PRETRAIN, FAST + ("batch_size=2",) + tuple(stage_list(pose=2, context=2)))
    seen = []
    pretrain(cfg, store, run, step_hook=lambda stage, step: seen.append((stage, step)))
    (Path(run) / f"steps_rank{rank}.json").write_text(json.dumps(seen))
    shutdown()


def test_two_process_gloo_pretraining(train_store, tmp_path):
    from csvr.train import checkpoint as ckpt

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


def _all_stages_worker(rank: int, world: int, port: int, store: str, out: str) -> None:
    """Every pretraining stage for 2 steps, then a 2-step fine-tune with its distributed evaluation."""
    _env(rank, world, port)
    from csvr.train import pretrain as pre
    from csvr.train.config import FinetuneConfig, PretrainConfig, load_config
    from csvr.train.distributed import shutdown
    from csvr.train.finetune import finetune

    build = pre._build_stage

    def recording_build(cfg, stage, run_dir, dist_info, splan):  # the weights each stage starts from
        built = build(cfg, stage, run_dir, dist_info, splan)
        if rank == 0:
            torch.save({k: v.clone() for k, v in built[0].state_dict().items()}, Path(out) / f"start_{stage.name}.pt")
        return built

    pre._build_stage = recording_build
    cfg = load_config(PretrainConfig, TINY_PRETRAIN,
                      FAST + ("batch_size=2",) + tuple(stage_list(pose=2, context=2, video=2, joint=2)))
    final = pre.pretrain(cfg, store, Path(out) / "pre")
    ft = load_config(FinetuneConfig, TINY_FINETUNE,
                     ("batch_size=2", "data.frames=4", "data.crop=32", "data.num_workers=0", "run.threads=1",
                      "run.tensorboard=false", "epochs=1", "steps_per_epoch=2", "eval_clips_per_video=2"))
    result = finetune(ft, store, Path(out) / "ft", pretrained=final)
    (Path(out) / f"ft_rank{rank}.json").write_text(json.dumps(result))
    shutdown()


def test_two_process_every_stage_finetune_and_evaluation(train_store, tmp_path):
    """Under DDP every stage runs (the video stage used to deadlock: motion_align got no gradient), every
    parameter of every trained group moves, and every frozen one stays exactly where it started."""
    from csvr.train import checkpoint as ckpt
    from csvr.train.system import GROUPS, stage_groups

    world = 2
    mp.spawn(_all_stages_worker, args=(world, _free_port(), str(train_store), str(tmp_path)), nprocs=world, join=True)
    for stage in ("pose", "context", "video", "joint"):
        start = torch.load(tmp_path / f"start_{stage}.pt", weights_only=True)
        end = ckpt.load(tmp_path / "pre" / "checkpoints" / stage / "final.pt")
        trained = stage_groups(stage)
        assert end["trained_groups"] == list(trained)
        params = {n for n, _ in _named_params(stage)}
        for key, before in start.items():
            group = key.split(".", 1)[0]
            after = end["model"][key]
            if group in trained and key in params:
                assert not torch.equal(before, after), f"stage {stage}: trained parameter {key} did not change"
            elif group not in trained:
                assert torch.equal(before, after), f"stage {stage}: frozen {key} changed"
        assert set(trained) <= set(GROUPS)
    records = [json.loads(line) for line in (tmp_path / "pre" / "log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in records] == [
        (s, i) for s in ("pose", "context", "video", "joint") for i in (1, 2)]
    video = [r for r in records if r["stage"] == "video"]
    assert all(r["grad_norm/motion_align"] > 0 for r in video)  # the group the bug left untrained
    joint = records[-1]
    assert all(joint[f"grad_norm/{g}"] > 0 for g in GROUPS)
    # fine-tune: every parameter trained, and the per-epoch evaluation covers the whole test split once
    results = [json.loads((tmp_path / f"ft_rank{r}.json").read_text()) for r in range(world)]
    assert results[0]["last_top1"] == results[1]["last_top1"]  # all-reduced over both ranks
    ft_records = [json.loads(line) for line in (tmp_path / "ft" / "log.jsonl").read_text().splitlines()]
    evals = [r for r in ft_records if r["stage"] == "eval"]
    assert len(evals) == 1 and evals[0]["eval_clips"] == 8 * 2  # 8 test videos x 2 clips, split over ranks
    ft_steps = [r for r in ft_records if r["stage"] == "finetune"]
    assert len(ft_steps) == 2
    pre_final = ckpt.load(tmp_path / "pre" / "checkpoints" / "final.pt")["model"]
    ft_last = ckpt.load(tmp_path / "ft" / "checkpoints" / "last.pt")["model"]
    moved = [k for k, v in ft_last.items() if k.startswith("vnet.") and k.endswith("weight")
             and k in pre_final and not torch.equal(v, pre_final[k])]
    assert moved, "fine-tuning did not move the loaded V-Network"


def _named_params(stage: str):
    """(name, parameter) of a CSVRModel built like the test's stages (only the names are used)."""
    from csvr.train.config import PretrainConfig, load_config
    from csvr.train.system import CSVRModel

    cfg = load_config(PretrainConfig, TINY_PRETRAIN, FAST)
    return CSVRModel(cfg.model, cfg.data.frames, cfg.data.future_frames).named_parameters()
