"""SmartEdit stage-2 training: ``python -m trainer.stage2 --shards manifests/``.

With no ``--llava``/``--sd`` it builds the tiny random-init configuration (``trainer.tiny``) so the
command runs on a CPU machine; with them it trains the real model from local weights. Multi-GPU /
multi-node: ``accelerate launch [--config_file trainer/configs/accelerate_zero2.yaml] -m
trainer.stage2 ...``. Defaults follow the paper: AdamW lr 1e-5, weight decay 0, warm-up ratio
0.001, LM : diffusion loss 1 : 1, 256 px.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import time
from dataclasses import fields
from pathlib import Path

log = logging.getLogger("trainer.stage2")


def parse_args(argv=None) -> argparse.Namespace:
    from trainer.models.build import ModelConfig

    p = argparse.ArgumentParser(prog="python -m trainer.stage2", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--shards", action="append", default=[], help="manifest file or folder (local or fsspec URL); repeatable")
    d.add_argument("--vqa", action="append", default=[], help="LLaVA-style VQA JSON (language loss only); repeatable")
    d.add_argument("--vqa-images", default=None, help="image folder for --vqa (default: the JSON's folder)")
    d.add_argument("--mix", action="append", default=[],
                   help="NAME=WEIGHT per source (default: the manifest's weight field, else by size)")
    d.add_argument("--workers", type=int, default=2, help="DataLoader workers per process")
    d.add_argument("--shuffle-buffer", type=int, default=64)
    d.add_argument("--dropout-p", type=float, default=0.05, help="conditioning dropout base rate p (text <2p, image p..3p)")
    m = p.add_argument_group("model (no --llava/--sd: tiny random-init configuration)")
    m.add_argument("--llava", default="", help="local LLaVA-hf folder (e.g. llava-1.5-7b-hf)")
    m.add_argument("--sd", default="", help="local diffusers SD-1.5 folder (vae/, scheduler/, unet/, text_encoder/, tokenizer/)")
    m.add_argument("--unet", default="", help="UNet folder overriding SD's (e.g. InstructDiffusion in diffusers layout)")
    defaults = ModelConfig()
    for f in fields(ModelConfig):
        if f.name in ("llava", "sd", "unet"):
            continue
        m.add_argument("--" + f.name.replace("_", "-"), type=type(getattr(defaults, f.name)), default=None,
                       help=f"default {getattr(defaults, f.name)}")
    t = p.add_argument_group("training")
    t.add_argument("--output", default="runs/stage2")
    t.add_argument("--max-steps", type=int, default=1000, help="optimizer steps")
    t.add_argument("--batch-size", type=int, default=1, help="per device micro-batch")
    t.add_argument("--grad-accum", type=int, default=1)
    t.add_argument("--lr", type=float, default=1e-5)
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--warmup-ratio", type=float, default=0.001)
    t.add_argument("--lr-schedule", choices=["constant_with_warmup", "cosine", "linear"], default="constant_with_warmup")
    t.add_argument("--max-grad-norm", type=float, default=1.0)
    t.add_argument("--mixed-precision", choices=["auto", "no", "bf16", "fp16"], default="auto",
                   help="auto: bf16 on GPU, fp32 on CPU")
    t.add_argument("--gradient-checkpointing", action="store_true")
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument("--keep-checkpoints", type=int, default=3, help="0 keeps all")
    t.add_argument("--resume", default="auto", help="auto (latest in --output), none, or a checkpoint folder")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if not args.shards and not args.vqa:
        p.error("give --shards (and/or --vqa)")
    if bool(args.llava) != bool(args.sd):
        p.error("--llava and --sd go together (or neither, for the tiny configuration)")
    return args


def model_config(args):
    """ModelConfig from the CLI; the tiny base (built once under OUTPUT/tiny-base) when no paths."""
    from trainer.models.build import ModelConfig
    from trainer.tiny import TINY_ARCH, ensure_tiny_base

    values = {}
    if args.llava:
        values.update(llava=args.llava, sd=args.sd, unet=args.unet)
    else:
        values.update(ensure_tiny_base(Path(args.output) / "tiny-base"), **TINY_ARCH)
    for f in fields(ModelConfig):
        given = getattr(args, f.name, None)
        if given is not None and f.name not in ("llava", "sd", "unet"):
            values[f.name] = given
    return ModelConfig(**values)


def _mixed_precision(choice: str) -> str:
    import torch

    if choice != "auto":
        return choice
    return "bf16" if torch.cuda.is_available() else "no"


def _frozen_dtype(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


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


def _setup(args):
    """Accelerator, model, optimizer, scheduler, data loader, resume state."""
    import torch
    from accelerate import Accelerator
    from transformers import get_scheduler

    from trainer.checkpoint import latest_checkpoint, load_training_state
    from trainer.data import make_loader
    from trainer.features import Featurizer
    from trainer.models.build import build_model, read_checkpoint_config
    from trainer.models.llava import image_preprocess_config
    from trainer.prompts import PromptBuilder
    from trainer.sources import load_sources, parse_mix

    precision = _mixed_precision(args.mixed_precision)
    accelerator = Accelerator(gradient_accumulation_steps=args.grad_accum, mixed_precision=precision,
                              cpu=not torch.cuda.is_available())
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    ckpt = None
    if args.resume == "auto":
        ckpt = latest_checkpoint(args.output)
    elif args.resume != "none":
        ckpt = Path(args.resume)
    cfg = read_checkpoint_config(ckpt) if ckpt else model_config(args)
    model, tokenizer = build_model(cfg, ckpt=ckpt, frozen_dtype=_frozen_dtype(precision))
    if args.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
        model.llm.llava.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for _, p in model.trainable_parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    warmup = math.ceil(args.warmup_ratio * args.max_steps)
    scheduler = get_scheduler(args.lr_schedule, optimizer, num_warmup_steps=warmup, num_training_steps=args.max_steps)
    if accelerator.state.deepspeed_plugin is not None:  # "auto" values need a prepared loader; ours is not
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        ds.update(train_micro_batch_size_per_gpu=args.batch_size, gradient_accumulation_steps=args.grad_accum,
                  gradient_clipping=args.max_grad_norm,
                  train_batch_size=args.batch_size * args.grad_accum * accelerator.num_processes)
    model, optimizer = accelerator.prepare(model, optimizer)
    state = load_training_state(accelerator, ckpt, optimizer, scheduler) if ckpt else {"step": 0, "batches": 0}

    llm = accelerator.unwrap_model(model).llm
    prompts = PromptBuilder(tokenizer, llm.image_token_id, llm.n_patches(), cfg.max_length)
    featurizer = Featurizer(prompts, image_preprocess_config(cfg.llava, llm.vision_size), cfg.resolution, args.dropout_p)
    sources = load_sources(args.shards, args.vqa, args.vqa_images, parse_mix(args.mix))
    loader = make_loader(sources, featurizer, tokenizer.pad_token_id, args.batch_size, seed=args.seed,
                         workers=args.workers, skip_batches=state["batches"], shuffle_buffer=args.shuffle_buffer)
    return accelerator, cfg, model, tokenizer, optimizer, scheduler, loader, sources, ckpt, state


def _to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v for k, v in batch.items()}


def train(args) -> dict:
    """Run training; returns a summary (steps, last losses, checkpoint path, timings)."""
    from tqdm import tqdm

    from trainer.checkpoint import load_rng, save_checkpoint

    accelerator, cfg, model, tokenizer, optimizer, scheduler, loader, sources, ckpt, state = _setup(args)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    step, batches = state["step"], state["batches"]
    losslog = LossLog(out / "loss_log.jsonl", step, accelerator.is_main_process)
    if accelerator.is_main_process:
        log.info("sources: %s", ", ".join(f"{s.name} ({s.nsamples} samples, weight {s.weight:.3f})" for s in sources))
        log.info("trainable parameters: %d", sum(p.numel() for _, p in accelerator.unwrap_model(model).trainable_parameters()))
    if ckpt:
        load_rng(accelerator, ckpt)  # last: nothing between here and the first step draws random numbers
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    data = iter(loader)
    bar = tqdm(total=args.max_steps, initial=step, disable=args.no_progress or not accelerator.is_local_main_process,
               desc="stage2", dynamic_ncols=True)
    last, saved = {}, ckpt
    totals = {"data_wait_s": 0.0, "step_s": 0.0, "steps": 0}
    while step < args.max_steps:
        t0 = time.perf_counter()
        wait, sums = 0.0, {"loss": 0.0, "lm_loss": 0.0, "diffusion_loss": 0.0}
        for _ in range(args.grad_accum):
            t_data = time.perf_counter()
            batch = _to_device(next(data), accelerator.device)
            wait += time.perf_counter() - t_data
            batches += 1
            with accelerator.accumulate(model):
                losses = model(batch)
                accelerator.backward(losses["loss"])
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            for k in sums:
                sums[k] += accelerator.reduce(losses[k].detach().float(), "mean").item() / args.grad_accum
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
        bar.update(1)
        bar.set_postfix(loss=f"{sums['loss']:.4f}", lm=f"{sums['lm_loss']:.3f}", diff=f"{sums['diffusion_loss']:.3f}")
        if step % args.checkpoint_every == 0 or step == args.max_steps:
            saved = save_checkpoint(accelerator, model, tokenizer, cfg, optimizer, scheduler, step=step,
                                    batches=batches, output=out, keep=args.keep_checkpoints)
    bar.close()
    return {"step": step, "last": last, "checkpoint": str(saved) if saved else None, **totals}


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    summary = train(parse_args(argv))
    print(json.dumps({k: v for k, v in summary.items()}, default=str))
    return summary


if __name__ == "__main__":
    main()
