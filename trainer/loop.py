"""The optimisation loop shared by stage 1 and stage 2: accelerator, optimizer, gradient
accumulation, loss log (+ an optional accelerate tracker), realised source mix, checkpoints.

A stage gives a model whose ``forward(batch)`` returns a dict of scalars with ``"loss"`` (the only
one carrying gradients) and whose ``trainable_parameters()`` lists what trains; a data loader; and
``write_model(folder)`` that saves the model parts of a checkpoint.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from pathlib import Path

log = logging.getLogger("trainer")


def mixed_precision(choice: str) -> str:
    import torch

    if choice != "auto":
        return choice
    return "bf16" if torch.cuda.is_available() else "no"


def frozen_dtype(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def make_accelerator(args, project: str):
    """An ``Accelerator`` (CPU when no GPU); with ``--report-to`` its tracker logs under OUTPUT offline."""
    import torch
    from accelerate import Accelerator

    tracker = None if args.report_to == "none" else args.report_to
    if tracker == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(Path(args.output).resolve()))
    accelerator = Accelerator(gradient_accumulation_steps=args.grad_accum, mixed_precision=mixed_precision(args.mixed_precision),
                              cpu=not torch.cuda.is_available(), log_with=tracker, project_dir=str(Path(args.output) / "logs"))
    if tracker:
        hparams = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers(project, config=hparams)
    return accelerator


def make_optimizer(args, model):
    """AdamW over the trainable parameters and the LR schedule (warm-up ratio of ``--max-steps``)."""
    import torch
    from transformers import get_scheduler

    params = [p for _, p in model.trainable_parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    warmup = math.ceil(args.warmup_ratio * args.max_steps)
    scheduler = get_scheduler(args.lr_schedule, optimizer, num_warmup_steps=warmup, num_training_steps=args.max_steps)
    return optimizer, scheduler


def prepare(args, accelerator, model, ckpt):
    """Optimizer and schedule, accelerate wrapping, and (resuming from ``ckpt``) their state.
    Returns ``(model, optimizer, scheduler, state)``; ``state``: ``step``, ``batches``, ``checkpoint``."""
    from trainer.checkpoint import load_training_state

    optimizer, scheduler = make_optimizer(args, model)
    configure_deepspeed(accelerator, args)
    model, optimizer = accelerator.prepare(model, optimizer)
    state = load_training_state(accelerator, ckpt, optimizer, scheduler) if ckpt else {"step": 0, "batches": 0}
    state["checkpoint"] = ckpt
    return model, optimizer, scheduler, state


def configure_deepspeed(accelerator, args) -> None:
    """DeepSpeed's "auto" values need a prepared loader; ours is not prepared, so fill them in."""
    if accelerator.state.deepspeed_plugin is not None:
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        ds.update(train_micro_batch_size_per_gpu=args.batch_size, gradient_accumulation_steps=args.grad_accum,
                  gradient_clipping=args.max_grad_norm,
                  train_batch_size=args.batch_size * args.grad_accum * accelerator.num_processes)


class LossLog:
    """``OUTPUT/loss_log.jsonl``: one JSON line per optimizer step; a resumed run drops lines after
    its checkpoint's step so the log matches the weights."""

    def __init__(self, path: Path, resume_step: int, enabled: bool):
        self.path, self.enabled = path, enabled
        if enabled and path.exists():
            lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= resume_step]
            path.write_text("".join(ln + "\n" for ln in lines))

    def write(self, row: dict) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")


class MixReport:
    """Counts the source of the first ``limit`` samples and logs them against the weights once."""

    def __init__(self, weights: dict[str, float], limit: int):
        self.weights, self.limit, self.counts, self.done = weights, limit, Counter(), limit <= 0

    def add(self, names: list[str]) -> None:
        if self.done:
            return
        room = self.limit - sum(self.counts.values())
        self.counts.update(names[:room])
        if sum(self.counts.values()) >= self.limit:
            self.report()

    def report(self) -> dict | None:
        total = sum(self.counts.values())
        if self.done or not total:
            return None
        self.done = True
        parts = [f"{name} {100 * self.counts[name] / total:.1f}% (weight {100 * w:.1f}%)" for name, w in self.weights.items()]
        log.info("realised mix over the first %d samples: %s", total, ", ".join(parts))
        return self.summary()

    def summary(self) -> dict:
        total = sum(self.counts.values()) or 1
        return {name: round(self.counts[name] / total, 4) for name in self.weights}


def _to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v for k, v in batch.items()}


def run(args, *, accelerator, model, optimizer, scheduler, loader, state: dict, write_model, weights: dict,
        desc: str) -> dict:
    """Train from ``state`` (``step``, ``batches``) to ``--max-steps``; returns a summary (steps,
    last losses, checkpoint path, time in data wait vs steps, realised mix)."""
    from tqdm import tqdm

    from trainer.checkpoint import load_rng, save_checkpoint

    if accelerator.is_main_process:
        log.info("trainable parameters: %d", sum(p.numel() for _, p in accelerator.unwrap_model(model).trainable_parameters()))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    step, batches = state["step"], state["batches"]
    losslog = LossLog(out / "loss_log.jsonl", step, accelerator.is_main_process)
    mix = MixReport(weights, args.mix_report if accelerator.is_main_process else 0)
    if state.get("checkpoint"):
        load_rng(accelerator, state["checkpoint"])  # last: nothing between here and the first step draws random numbers
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    data = iter(loader)
    bar = tqdm(total=args.max_steps, initial=step, disable=args.no_progress or not accelerator.is_local_main_process,
               desc=desc, dynamic_ncols=True)
    last, saved = {}, state.get("checkpoint")
    totals = {"data_wait_s": 0.0, "step_s": 0.0, "steps": 0}
    while step < args.max_steps:
        t0 = time.perf_counter()
        wait, sums = 0.0, Counter()
        for _ in range(args.grad_accum):
            t_data = time.perf_counter()
            batch = next(data)
            mix.add(batch.get("source", []))
            batch = _to_device(batch, accelerator.device)
            wait += time.perf_counter() - t_data
            batches += 1
            with accelerator.accumulate(model):
                losses = model(batch)
                accelerator.backward(losses["loss"])
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            for k, v in losses.items():
                sums[k] += accelerator.reduce(v.detach().float(), "mean").item() / args.grad_accum
        scheduler.step()
        step += 1
        elapsed = time.perf_counter() - t0
        totals["data_wait_s"] += wait
        totals["step_s"] += elapsed
        totals["steps"] += 1
        last = {"step": step, **{k: round(v, 6) for k, v in sums.items()}, "lr": scheduler.get_last_lr()[0],
                "step_time_s": round(elapsed, 4), "data_wait_s": round(wait, 4),
                "samples": batches * args.batch_size * accelerator.num_processes, "time": time.time()}
        losslog.write(last)
        if args.report_to != "none":
            accelerator.log({k: v for k, v in last.items() if k not in ("step", "time")}, step=step)
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in sums.items()})
        if step % args.checkpoint_every == 0 or step == args.max_steps:
            saved = save_checkpoint(accelerator, write_model, optimizer, scheduler, step=step,
                                    batches=batches, output=out, keep=args.keep_checkpoints)
    bar.close()
    mix.report()
    if args.report_to != "none":
        accelerator.end_training()
    return {"step": step, "last": last, "checkpoint": str(saved) if saved else None, "mix": mix.summary(), **totals}
