"""Command-line options shared by ``trainer.stage1`` and ``trainer.stage2``, and the rules that
turn them into a model configuration and a start point.

One source of defaults: the model flags are generated from ``ModelConfig``'s fields (a flag left
out is ``None`` = "not given"), so a resumed run can tell an option the user typed from a default
and refuse one that conflicts with the checkpoint instead of silently ignoring it.
"""
from __future__ import annotations

import argparse
import logging
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

log = logging.getLogger("trainer")

BASE_PATHS = ("llava", "sd", "unet")
# Flags written by hand (booleans, base paths); every other ModelConfig field gets --field-name.
HAND_WRITTEN = set(BASE_PATHS) | {"use_bim"}


class UsageError(SystemExit):
    """A one-sentence refusal: printed without a traceback, exit status 2."""

    def __init__(self, message: str):
        super().__init__(f"error: {message}")


def add_model_options(p: argparse.ArgumentParser) -> None:
    from trainer.models.build import ModelConfig

    m = p.add_argument_group("model (no --llava/--sd/--init-from: tiny random-init configuration)")
    m.add_argument("--llava", default="", help="local LLaVA-hf folder (e.g. llava-1.5-7b-hf)")
    m.add_argument("--sd", default="", help="local diffusers SD-1.5 folder (vae/, scheduler/, unet/, text_encoder/, tokenizer/)")
    m.add_argument("--unet", default="", help="UNet folder overriding SD's (an InstructPix2Pix / InstructDiffusion "
                                               "diffusers unet/: its 8-channel conv_in is kept as is)")
    m.add_argument("--init-from", default="", help="checkpoint of an earlier stage: weights only (LoRA, token rows, "
                                                    "QFormer, BIM, UNet, whichever it has), no step or optimizer")
    defaults = ModelConfig()
    for f in fields(ModelConfig):
        if f.name in HAND_WRITTEN:
            continue
        m.add_argument("--" + f.name.replace("_", "-"), type=type(getattr(defaults, f.name)), default=None,
                       help=f"default {getattr(defaults, f.name)}")


def add_training_options(p: argparse.ArgumentParser, *, output: str, lr: float, warmup_ratio: float,
                         schedule: str) -> None:
    t = p.add_argument_group("training")
    t.add_argument("--output", default=output)
    t.add_argument("--max-steps", type=int, default=1000, help="optimizer steps")
    t.add_argument("--batch-size", type=int, default=1, help="per device micro-batch")
    t.add_argument("--grad-accum", type=int, default=1)
    t.add_argument("--lr", type=float, default=lr)
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--warmup-ratio", type=float, default=warmup_ratio)
    t.add_argument("--lr-schedule", choices=["constant_with_warmup", "cosine", "linear"], default=schedule)
    t.add_argument("--max-grad-norm", type=float, default=1.0)
    t.add_argument("--mixed-precision", choices=["auto", "no", "bf16", "fp16"], default="auto",
                   help="auto: bf16 on GPU, fp32 on CPU")
    t.add_argument("--gradient-checkpointing", action="store_true")
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument("--keep-checkpoints", type=int, default=3, help="0 keeps all")
    t.add_argument("--resume", default="auto",
                   help="auto (OUTPUT/checkpoints/latest if any), none, or a checkpoint folder (or its 'latest' link)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--workers", type=int, default=2, help="DataLoader workers per process")
    t.add_argument("--shuffle-buffer", type=int, default=64)
    t.add_argument("--report-to", choices=["none", "tensorboard", "wandb"], default="none",
                   help="also log to an accelerate tracker (offline) beside OUTPUT/loss_log.jsonl")
    t.add_argument("--mix-report", type=int, default=1000, help="log the realised source mix over the first N samples")
    t.add_argument("--no-progress", action="store_true")


def given_model_options(args) -> dict:
    """ModelConfig fields the user typed (base paths included), by field name."""
    from trainer.models.build import ModelConfig

    given = {f.name: getattr(args, f.name) for f in fields(ModelConfig)
             if f.name not in HAND_WRITTEN and getattr(args, f.name, None) is not None}
    given.update({name: getattr(args, name) for name in BASE_PATHS if getattr(args, name, "")})
    if getattr(args, "no_bim", False):
        given["use_bim"] = False
    return given


def model_config(args, stage_defaults: dict | None = None):
    """ModelConfig for a new run: the ``--init-from`` checkpoint's configuration, else the given base
    paths, else the tiny base (built once under OUTPUT/tiny-base); then every option typed on top."""
    from trainer.models.build import ModelConfig, read_checkpoint_config
    from trainer.tiny import TINY_ARCH, ensure_tiny_base

    given = given_model_options(args)
    if args.init_from:
        values = vars(read_checkpoint_config(args.init_from)) | {"unet": ""}
    elif args.llava or args.sd:
        if not (args.llava and args.sd):
            raise UsageError("--llava and --sd go together (or neither, for the tiny configuration)")
        values = {}
    else:
        values = {**ensure_tiny_base(Path(args.output) / "tiny-base"), **TINY_ARCH}
    values.update(stage_defaults or {})
    values.update(given)
    return ModelConfig(**values)


def resume_checkpoint(args) -> Path | None:
    """The checkpoint to resume exactly: ``--resume auto`` finds OUTPUT's latest, a path is taken as is."""
    from trainer.checkpoint import latest_checkpoint

    if args.resume == "none":
        return None
    if args.resume == "auto":
        return latest_checkpoint(args.output)
    path = Path(args.resume)
    if not (path / "training_state.pt").exists():
        raise UsageError(f"--resume {path}: not a training checkpoint (no training_state.pt); "
                         "use --init-from to start from its weights")
    return path.resolve()


def check_resume_conflicts(args, ckpt: Path, cfg) -> None:
    """Refuse, in one sentence, model options or ``--init-from`` that differ from what ``ckpt`` was trained with."""
    from dataclasses import asdict

    from trainer.models.build import read_checkpoint_meta

    recorded = asdict(cfg)
    for name, value in given_model_options(args).items():
        have = recorded.get(name)
        same = (Path(value).resolve() == Path(have).resolve()) if name in BASE_PATHS and have else value == have
        if not same:
            flag = "--no-bim" if name == "use_bim" else "--" + name.replace("_", "-") + f" {value}"
            raise UsageError(f"{flag} conflicts with checkpoint {ckpt} ({name} = {have!r}); drop the option to "
                             "resume, or give a new --output (or --resume none) to start over")
    init = read_checkpoint_meta(ckpt).get("init_from", "")
    if args.init_from and not (init and Path(args.init_from).resolve() == Path(init).resolve()):
        raise UsageError(f"--init-from {args.init_from} conflicts with checkpoint {ckpt}, which started from "
                         f"{init or 'base weights'}; drop --init-from to resume, or give a new --output")


def steps_done(ckpt: Path) -> int:
    import torch

    return int(torch.load(ckpt / "training_state.pt", map_location="cpu", weights_only=False)["step"])



def start_point(args, stage_defaults: dict | None = None):
    """``(checkpoint to resume or None, ModelConfig, init_from, summary)``: ``summary`` is set (and
    the run has nothing to do) when the checkpoint is already at ``--max-steps``."""
    from trainer.models.build import read_checkpoint_config, read_checkpoint_meta

    ckpt = resume_checkpoint(args)
    if ckpt is None:
        return None, model_config(args, stage_defaults), args.init_from, None
    cfg = read_checkpoint_config(ckpt)
    check_resume_conflicts(args, ckpt, cfg)
    done = steps_done(ckpt)
    summary = None
    if done >= args.max_steps:
        log.info("already at step %d (--max-steps %d), nothing to do", done, args.max_steps)
        summary = {"step": done, "last": {}, "checkpoint": str(ckpt), "nothing_to_do": True}
    return ckpt, cfg, read_checkpoint_meta(ckpt).get("init_from", ""), summary


def cli_main(train_fn, parse_args, argv=None) -> dict:
    """``train_fn(parse_args(argv))``, printing the summary as JSON; a missing file or a bad
    configuration ends in one sentence, no traceback."""
    import json
    import os

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)
    with usage_errors():
        summary = train_fn(args)
    print(json.dumps(summary, default=str))
    return summary


@contextmanager
def usage_errors():
    """Inside: a missing file or a bad configuration (FileNotFoundError / ValueError) becomes a
    one-sentence ``UsageError`` (exit status 2, no traceback)."""
    try:
        yield
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
