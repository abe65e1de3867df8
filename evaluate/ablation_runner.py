"""Running one ablation row with the real trainer: a pretraining checkpoint, a fine-tune, an evaluation.

A row (`evaluate.paper.AblationRow`) says which pretraining stages it needs and with which settings
(`paper.resolved_pretrain`: stages, context loss, fusion, video targets, f_d layer) and which
downstream variant it fine-tunes. `RowRunner` turns that into checkpoints as cheaply as it honestly
can:

- ONE staged pretraining run (`pose -> context -> video -> joint`, the config as is) is shared by
  every row whose settings it matches; a row that needs only some stages takes their per-stage
  `final.pt` (Table I: f_d = `pose/final.pt`, f_s = `context/final.pt`, f_i without the video
  branch = pose + context merged, with a fresh integration layer and aligner; full = the joint stage).
- A row with other settings (Table IV: another context loss; Table V: one video target) pretrains
  its own run, but first copies from the shared run the `final.pt` of every stage whose checkpoint
  does not depend on the changed setting (`stage_settings`: a stage's own settings plus those of the
  stages it starts from -- the pose stage never does; the context stage unless the context loss
  changed; the video stage, which starts from the context stage, also when the context loss
  changed), and resumes, so only the affected stages train again.
- Every row is fine-tuned with the same fine-tuning config (`train.finetune.finetune`) and then
  evaluated on the same test clips (10 per video, centre crop), streamed from the store once per row
  (only per-video logit sums are kept): clip-level and video-level top-1 of the last epoch's model
  (no test-set model selection), and per-class accuracy.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csvr.evaluate import paper

log = logging.getLogger(__name__)

# paper row fine-tuning variant -> train.finetune variant
VARIANTS = {"scratch": "scratch", "scratch_rgb": "scratch_fs", "pose_only": "fd", "video_only": "fs", "concat": "concat",
            "integrated": "fi"}
# pretraining stages in the trainer's order (train.config default stages, configs/pretrain/*.yaml):
# the video stage runs after context and starts from it (init_from: [pose, context])
STAGE_ORDER = ("pose", "context", "video", "joint")
# settings each stage's own training reads
STAGE_OWN_SETTINGS = {"pose": (), "context": ("context_loss",), "video": ("fusion", "video_targets", "fd_layer"),
                      "joint": ("context_loss", "fusion", "video_targets", "fd_layer")}
# the trainer's default `init_from` (train.config.PretrainConfig.stages)
DEFAULT_INIT_FROM = {"pose": (), "context": (), "video": ("pose", "context"), "joint": ("pose", "context", "video")}


def stage_settings(init_from: dict[str, Any] | None = None) -> dict[str, tuple[str, ...]]:
    """Settings each stage's checkpoint depends on: its own (`STAGE_OWN_SETTINGS`) plus, transitively,
    those of the stages it starts from (`init_from`, stage -> earlier stages; the trainer's default
    when None). With the default order the video stage depends on the context loss too: it starts
    from the context stage's V-Network."""
    init = {k: tuple(v) for k, v in (DEFAULT_INIT_FROM if init_from is None else init_from).items()}
    out: dict[str, tuple[str, ...]] = {}

    def deps(stage: str, seen: tuple[str, ...] = ()) -> set[str]:
        if stage in seen:
            raise ValueError(f"init_from cycle through stage {stage!r}")
        d = set(STAGE_OWN_SETTINGS[stage])
        for src in init.get(stage, ()):
            d |= deps(src, seen + (stage,))
        return d

    for stage in STAGE_OWN_SETTINGS:
        d = deps(stage)
        out[stage] = tuple(k for k in ("context_loss", "fusion", "video_targets", "fd_layer") if k in d)
    return out


# settings each stage's checkpoint depends on (a stage is reusable when these match), default stages
STAGE_SETTINGS = stage_settings()


def reusable_stages(stages: list[str], settings: dict[str, Any], have: dict[str, Any], done: set[str],
                    init_from: dict[str, Any]) -> set[str]:
    """The stages of a row that the shared run's `final.pt` files give exactly: finished there, every
    setting the stage depends on (`stage_settings(init_from)`) equal, and every stage it started
    from also part of the row (a row without the context stage would train its video stage from
    the pose stage alone)."""
    deps = stage_settings(init_from)
    return {s for s in stages if s in done and all(have[k] == settings[k] for k in deps[s])
            and set(init_from.get(s, ())) <= set(stages)}
GLUE_GROUPS = ("integration", "motion_align")  # trained only with the video branch


def resolve_config(kind: str, config: str | Path) -> Path:
    """A config name (`tiny`) -> `configs/<kind>/tiny.yaml`; an existing file path is used as is."""
    p = Path(config)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise FileNotFoundError(f"{p}: config file not found")
        return p
    repo = Path(__file__).resolve().parents[1]
    path = repo / "configs" / kind / f"{config}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {kind} config named {config!r}")
    return path


def ablation_finetune_config(config: str | Path) -> Path:
    """The fine-tuning config of an ablation: `configs/finetune/<name>_ablation.yaml` when it exists
    (a cheaper recipe: every row fine-tunes once), else `configs/finetune/<name>.yaml`."""
    p = Path(config)
    if p.suffix not in (".yaml", ".yml") and not p.is_file():
        cheap = Path(__file__).resolve().parents[1] / "configs" / "finetune" / f"{config}_ablation.yaml"
        if cheap.is_file():
            return cheap
    return resolve_config("finetune", config)


def run_settings(cfg: Any) -> dict[str, Any]:
    """The row settings (`paper.PRETRAIN_DEFAULTS` keys) a `PretrainConfig` trains with."""
    m = cfg.model
    return {"context_loss": m.context_loss, "fusion": m.integration, "video_targets": list(cfg.loss.video_targets),
            "fd_layer": int(m.options.get("feature_layer") or m.pose_layers)}


@dataclass
class RowRunner:
    """`run_row(row, row_dir) -> {"clip": top-1, "video": top-1}` for `evaluate.ablation.run_ablation`."""

    store: Path
    pretrain_config: Path
    finetune_config: Path
    out_dir: Path
    pretrain_run: Path | None = None           # shared staged run to reuse; None = pretrain one in out_dir
    pretrain_overrides: tuple[str, ...] = ()
    finetune_overrides: tuple[str, ...] = ()
    device: str = "auto"                       # evaluation device: auto = CUDA when available, else CPU
    num_clips: int = 10
    batch_size: int = 16
    num_workers: int | None = None             # eval loader workers; None = default_loader_workers(None)
    threads: int | None = None                 # torch threads for the evaluation; None = as training left them
    random_missing: bool = False               # groups the variant needs but the row's pretraining did not train
                                               # start random (the benchmark's one-network protocols); else
                                               # only the video-branch glue may
    per_class: dict[str, list[float | None]] = field(default_factory=dict)  # row key -> per-class accuracy
    timings: dict[str, float] = field(default_factory=dict)
    _test_batches: Any = None

    # ------------------------------------------------------------------------------ pretraining
    def _base_config(self) -> Any:
        from csvr.train.config import PretrainConfig, load_config

        return load_config(PretrainConfig, self.pretrain_config, self.pretrain_overrides)

    def pretrained_model_config(self) -> Any:
        """The model settings of the pretraining the rows start from (the given run's, else the config's)."""
        from csvr.train.config import PretrainConfig, load_config

        run_cfg = Path(self.pretrain_run) / "config.yaml" if self.pretrain_run is not None else None
        if run_cfg is not None and run_cfg.is_file():
            return load_config(PretrainConfig, run_cfg).model
        return self._base_config().model

    def shared_run(self) -> Path:
        """The shared staged pretraining run (pretrained here, once, when none was given)."""
        from csvr.train.pretrain import pretrain

        if self.pretrain_run is not None:
            if not (Path(self.pretrain_run) / "checkpoints" / "final.pt").is_file():
                raise FileNotFoundError(f"{self.pretrain_run}: not a finished pretraining run "
                                        "(checkpoints/final.pt missing)")
            return Path(self.pretrain_run)
        run = self.out_dir / "pretrain"
        if not (run / "checkpoints" / "final.pt").is_file():
            t0 = time.perf_counter()
            log.info("ablation: pretraining the shared staged run in %s", run)
            pretrain(self._base_config(), self.store, run, resume=True)
            self.timings["pretrain shared"] = time.perf_counter() - t0
        self.pretrain_run = run
        return run

    def _shared_settings(self, run: Path) -> tuple[dict[str, Any], set[str], dict[str, list[str]]]:
        from csvr.train.config import PretrainConfig, load_config

        cfg = load_config(PretrainConfig, run / "config.yaml")
        stages = {s.name for s in cfg.stages if s.enabled and (run / "checkpoints" / s.name / "final.pt").is_file()}
        return run_settings(cfg), stages, {s.name: list(s.init_from) for s in cfg.stages}

    def _stage_sources(self, settings: dict[str, Any], stages: list[str], row_key: str) -> dict[str, Path]:
        """stage -> the run folder whose `checkpoints/<stage>/final.pt` the row uses."""
        shared = self.shared_run()
        have, done, init_from = self._shared_settings(shared)
        reusable = reusable_stages(stages, settings, have, done, init_from)
        if set(stages) <= reusable:
            return {s: shared for s in stages}
        own = self._own_run(settings, stages, row_key, shared, reusable)
        return {s: own for s in stages}

    def _own_run(self, settings: dict[str, Any], stages: list[str], key: str, shared: Path,
                 reusable: set[str]) -> Path:
        """Pretrain a run with the row's settings; stages that do not depend on the changed settings
        are copied from the shared run first (and skipped by `--resume`)."""
        from csvr.train.pretrain import pretrain

        run = self.out_dir / key / "pretrain"
        cfg = self._base_config()
        cfg.model.context_loss = settings["context_loss"]
        cfg.model.integration = settings["fusion"]
        cfg.loss.video_targets = list(settings["video_targets"])
        if settings["fd_layer"] != (cfg.model.options.get("feature_layer") or cfg.model.pose_layers):
            cfg.model.options = {**cfg.model.options, "feature_layer": int(settings["fd_layer"])}
        cfg.stages = [s for s in cfg.stages if s.name in stages]
        for s in cfg.stages:
            s.init_from = [x for x in s.init_from if x in stages]
        cfg.validate("config")
        # copied stages are exactly what this run would train: their training ignores the changed settings
        for s in reusable:
            dst = run / "checkpoints" / s / "final.pt"
            if not dst.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shared / "checkpoints" / s / "final.pt", dst)
                log.info("ablation row %s: stage %s reused from %s", key, s, shared)
        if not (run / "checkpoints" / "final.pt").is_file():
            t0 = time.perf_counter()
            log.info("ablation row %s: pretraining stages %s with %s", key, stages, settings)
            pretrain(cfg, self.store, run, resume=True)
            self.timings[f"pretrain {key}"] = time.perf_counter() - t0
        return run

    def row_checkpoint(self, row: paper.AblationRow, row_dir: Path) -> Path | None:
        """The pretraining checkpoint a row fine-tunes from (None: training from scratch)."""
        from csvr.evaluate.checkpoints import load_checkpoint, merge_stage_checkpoints, pretrain_checkpoint

        settings = paper.resolved_pretrain(row)
        stages = settings.get("stages")
        if not stages:
            return None
        stages = [s for s in STAGE_ORDER if s in stages]
        sources = self._stage_sources(settings, stages, row.key)
        if "joint" in stages:  # the joint stage holds every group
            return pretrain_checkpoint(sources["joint"], "joint")
        paths = [pretrain_checkpoint(sources[s], s) for s in stages]
        ck_layer = load_checkpoint(paths[0]).get("model_config", {})
        layer = int((ck_layer.get("options") or {}).get("feature_layer") or ck_layer.get("pose_layers", 0))
        options = {"feature_layer": int(settings["fd_layer"])} if layer != int(settings["fd_layer"]) else None
        if len(paths) == 1 and options is None:
            return paths[0]
        return merge_stage_checkpoints(paths, row_dir / "pretrained.pt", model_options=options)

    # ------------------------------------------------------------------------- fine-tune + eval
    def test_batches(self) -> Any:
        """The factory of the test clips every row is evaluated on (10 per video, centre crop, the
        fine-tuning recipe). Each call of the factory streams them from the store again: nothing is
        cached, so memory does not grow with the test split (every row reads it once)."""
        if self._test_batches is None:
            from csvr.evaluate.components import Recipe, eval_batches
            from csvr.train.config import FinetuneConfig, load_config

            cfg = load_config(FinetuneConfig, self.finetune_config, self.finetune_overrides)
            r = Recipe(frames=cfg.data.frames, stride=cfg.data.stride, crop=cfg.data.crop,
                       split_index=cfg.data.split_index, input_size=cfg.data.input_size,
                       pose_norm=cfg.data.pose_norm)
            self._test_batches = eval_batches(self.store, "test", num_clips=self.num_clips,
                                              batch_size=self.batch_size, device=self._device(),
                                              num_workers=self.num_workers, split_index=r.split_index,
                                              spec=r.spec(), crop=r.crop, input_size=r.input_size,
                                              pose_norm=r.pose_norm)
        return self._test_batches

    def _device(self) -> str:
        from csvr.evaluate.components import resolve_device

        return resolve_device(self.device)

    def evaluate(self, net: Any, num_classes: int) -> dict[str, Any]:
        """The `recognition` section of a fine-tuned network on the test clips, in one streaming pass:
        per batch only the logits are folded into per-video sums, then the batch is dropped."""
        import torch

        from csvr.evaluate.metrics import RecognitionAccumulator
        from csvr.evaluate.pipeline import recognition_section
        from csvr.evaluate.components import eval_threads

        if self.threads is not None:  # else as the trainer left them (run.threads; 0 = cores_per_process())
            torch.set_num_threads(eval_threads(self.threads))
        acc = RecognitionAccumulator(num_classes)
        with torch.no_grad():
            for b in self.test_batches()():
                acc.add(net(b["clip"], b["pose"][..., :2]).float().cpu().numpy(), b["label"].cpu().numpy(),
                        b["video_index"].cpu().numpy())
                del b
        vids, scores, labels = acc.video_scores()
        return {**recognition_section(acc),
                "per_video": {"ids": vids.tolist(), "correct": (scores.argmax(axis=1) == labels).astype(int).tolist()}}

    def __call__(self, row: paper.AblationRow, row_dir: Path) -> dict[str, float]:
        from csvr.evaluate.checkpoints import finetune_checkpoint, load_finetuned_network, valid_groups
        from csvr.evaluate.components import StoreInfo
        from csvr.train.config import FinetuneConfig, load_config
        from csvr.train.finetune import VARIANT_GROUPS, finetune

        row_dir = Path(row_dir)
        row_dir.mkdir(parents=True, exist_ok=True)
        variant = VARIANTS[row.finetune_variant]
        t0 = time.perf_counter()
        pretrained = self.row_checkpoint(row, row_dir)
        overrides = list(self.finetune_overrides) + [f"variant={variant}"]
        if pretrained is not None:
            have = set(valid_groups(pretrained))
            allowed = (*GLUE_GROUPS, *(g for g in VARIANT_GROUPS[variant] if g not in GLUE_GROUPS and self.random_missing))
            glue = [g for g in allowed if g in VARIANT_GROUPS[variant] and g not in have]
            if glue:  # e.g. Table I f_i (AdaIN) without the video branch: fresh integration layer
                overrides.append(f"allow_random={json.dumps(glue)}")
        cfg = load_config(FinetuneConfig, self.finetune_config, overrides)
        if pretrained is None:  # scratch: the very network the pretrained rows fine-tune, randomly initialised
            cfg.model = self.pretrained_model_config()
        ft_dir = row_dir / "finetune"
        t1 = time.perf_counter()
        finetune(cfg, self.store, ft_dir, pretrained=pretrained, resume=(ft_dir / "checkpoints" / "last.pt").is_file())
        t2 = time.perf_counter()
        net = load_finetuned_network(finetune_checkpoint(ft_dir), self._device())
        rec = self.evaluate(net, len(StoreInfo(self.store).classes))
        per_video = rec.pop("per_video")
        del net
        self.per_class[row.key] = rec["per_class"]
        t3 = time.perf_counter()
        self.timings[f"row {row.key}"] = t3 - t0
        summary = {"row": row.key, "variant": variant, "pretrained": str(pretrained) if pretrained else None,
                   "finetune_config": str(self.finetune_config), "overrides": overrides, "recognition": rec,
                   "per_video": per_video,
                   "seconds": {"checkpoint": t1 - t0, "finetune": t2 - t1, "evaluate": t3 - t2}}
        (row_dir / "eval.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        log.info("ablation row %s (%s): clip top-1 %.3f, video top-1 %.3f (fine-tune %.0f s, eval %.0f s)",
                 row.key, variant, rec["clip_top1"], rec["video_top1"], t2 - t1, t3 - t2)
        return {"clip": rec["clip_top1"], "video": rec["video_top1"]}


# Table I rows drawn per class in the report (Figure 4 shows f_d, f_s and f_i; scratch is the baseline)
PER_CLASS_ROWS = {"scratch": "scratch", "f_d": "f_d", "f_s": "f_s", "full": "f_i (full CSVR)"}


def attach_to_report(report_dir: str | Path, results: dict[str, Any], ablation_dir: str | Path) -> Path:
    """Add the ablation tables and the per-class accuracy of the Table I rows (from each row's
    `eval.json`) to `report_dir/metrics.json` and rebuild `report_dir/report.md`."""
    from csvr.evaluate.metrics_io import load_metrics
    from csvr.evaluate.report import build_report

    report_dir = Path(report_dir)
    m = load_metrics(report_dir / "metrics.json")
    m.pop("schema", None)
    m["ablation"] = results
    variants = {}
    for key, label in PER_CLASS_ROWS.items():
        path = Path(ablation_dir) / key / "eval.json"
        if path.is_file():
            variants[label] = json.loads(path.read_text(encoding="utf-8"))["recognition"]["per_class"]
    if variants:
        m["per_class_variants"] = variants
    return build_report(report_dir, metrics=m)["report"]
