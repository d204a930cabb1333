"""Training checkpoints: the model parts (``trainer.models.build`` layout) plus the training state
needed to resume exactly: optimizer, LR scheduler, step, batches consumed, and every RNG.

``OUTPUT/checkpoints/step-0000100/`` is written under a temporary name and renamed when complete;
``OUTPUT/checkpoints/latest`` (replaced atomically afterwards) is a relative folder link to the
newest complete one, so ``--ckpt OUTPUT/checkpoints/latest`` and ``--resume`` accept it.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch


def checkpoint_root(output: str | Path) -> Path:
    return Path(output) / "checkpoints"


def latest_checkpoint(output: str | Path) -> Path | None:
    """The checkpoint ``latest`` points at, else the highest complete ``step-*`` folder, else None."""
    root = checkpoint_root(output)
    pointer = root / "latest"
    if (pointer / "training_state.pt").exists():
        return pointer.resolve()
    steps = sorted(p for p in root.glob("step-*") if (p / "training_state.pt").exists())
    return steps[-1] if steps else None


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_link(link: Path, target: str) -> None:
    """``link`` -> ``target`` (relative), replacing any earlier link in one rename."""
    tmp = link.with_name(link.name + ".tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp, target_is_directory=True)
    os.replace(tmp, link)


def save_checkpoint(accelerator, write_model, optimizer, scheduler, *, step: int, batches: int,
                    output: str | Path, keep: int = 0) -> Path:
    """Collective call (every rank): rank 0 writes the model (``write_model(folder)``) and the
    optimizer, each rank its RNG."""
    root = checkpoint_root(output)
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng_rank{accelerator.process_index}.pt")
    if accelerator.distributed_type.value == "DEEPSPEED":  # ZeRO shards the optimizer: let DeepSpeed save it
        accelerator.save_state(str(tmp / "deepspeed"))
    if accelerator.is_main_process:
        write_model(tmp)
        state = {"step": step, "batches": batches, "scheduler": scheduler.state_dict()}
        if accelerator.distributed_type.value != "DEEPSPEED":
            state["optimizer"] = optimizer.state_dict()
        torch.save(state, tmp / "training_state.pt")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _atomic_link(root / "latest", final.name)
        if keep > 0:
            for old in sorted(root.glob("step-*"))[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_training_state(accelerator, ckpt: Path, optimizer, scheduler) -> dict:
    """Restore optimizer and scheduler (model parts were loaded by ``build_model``); returns the
    state dict (``step``, ``batches``). RNG is restored separately, right before the loop."""
    state = torch.load(ckpt / "training_state.pt", map_location="cpu", weights_only=False)
    if accelerator.distributed_type.value == "DEEPSPEED":
        accelerator.load_state(str(ckpt / "deepspeed"))
    else:
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state


def load_rng(accelerator, ckpt: Path) -> None:
    file = ckpt / f"rng_rank{accelerator.process_index}.pt"
    if file.exists():
        set_rng_state(torch.load(file, map_location="cpu", weights_only=False))
