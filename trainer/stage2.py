"""SmartEdit stage-2 training: ``python -m trainer.stage2 --shards manifests/`` (or ``--recipe FILE``).

Stage 2a (MLLMSD, ``--no-bim``) starts from a stage-1 checkpoint (``--init-from``) and an
InstructPix2Pix / InstructDiffusion UNet (``--unet``); stage 2b adds the BIM and starts from 2a's
checkpoint (``--init-from``). With no ``--llava``/``--sd``/``--init-from`` it builds the tiny
random-init configuration (``trainer.tiny``) so the command runs on a CPU machine. Multi-GPU /
multi-node: ``accelerate launch [--config_file trainer/configs/accelerate_zero2.yaml] -m
trainer.stage2 ...``. Defaults follow the paper: AdamW lr 1e-5, weight decay 0, warm-up ratio
0.001, LM : diffusion loss 1 : 1, 256 px.
"""
from __future__ import annotations

import argparse
import logging
import random

log = logging.getLogger("trainer.stage2")


def parse_args(argv=None) -> argparse.Namespace:
    from trainer.options import add_model_options, add_training_options

    p = argparse.ArgumentParser(prog="python -m trainer.stage2", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--shards", action="append", default=[], help="manifest file or folder (local or fsspec URL); repeatable")
    d.add_argument("--recipe", default="", help="dataset recipe YAML (recipes/smartedit-stage2.yaml); replaces --shards/--vqa/--mix")
    d.add_argument("--data-root", default=None, help="folder the recipe's relative paths resolve against")
    d.add_argument("--vqa", action="append", default=[], help="LLaVA-style VQA JSON (language loss only); repeatable")
    d.add_argument("--vqa-images", default=None, help="image folder for --vqa (default: the JSON's folder)")
    d.add_argument("--mix", action="append", default=[],
                   help="NAME=WEIGHT per source (default: the manifest's weight field, else by size)")
    d.add_argument("--dropout-p", type=float, default=0.05, help="conditioning dropout base rate p (text <2p, image p..3p)")
    add_model_options(p)
    p.add_argument_group("model").add_argument("--no-bim", action="store_true", help="stage 2a (MLLMSD): no BIM")
    add_training_options(p, output="runs/stage2", lr=1e-5, warmup_ratio=0.001, schedule="constant_with_warmup")
    args = p.parse_args(argv)
    if args.recipe and (args.shards or args.vqa or args.mix):
        p.error("--recipe names every dataset and weight; leave out --shards, --vqa and --mix")
    if not (args.recipe or args.shards or args.vqa):
        p.error("give --shards (and/or --vqa) or --recipe")
    return args


def load_training_sources(args):
    from trainer.recipe import recipe_sources
    from trainer.sources import load_sources, parse_mix

    if args.recipe:
        return recipe_sources(args.recipe, args.data_root)
    return load_sources(args.shards, args.vqa, args.vqa_images, parse_mix(args.mix))


def train(args) -> dict:
    """Run training; returns a summary (steps, last losses, checkpoint path, timings, realised mix)."""
    import torch

    from trainer.data import make_loader
    from trainer.features import Featurizer
    from trainer.loop import frozen_dtype, make_accelerator, prepare, run
    from trainer.models.build import build_model, checkpoint_parts, save_model
    from trainer.models.llava import image_preprocess_config
    from trainer.options import start_point
    from trainer.prompts import PromptBuilder

    ckpt, cfg, init_from, finished = start_point(args, {"use_bim": True})
    if finished:
        return finished
    sources = load_training_sources(args)  # before the model: a held-out or missing manifest fails fast
    accelerator = make_accelerator(args, "stage2")
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    weights_from = ckpt or (args.init_from or None)
    if init_from and not ckpt:
        log.info("--init-from %s: loading %s (weights only)", init_from, ", ".join(checkpoint_parts(init_from)))
    model, tokenizer = build_model(cfg, ckpt=weights_from, frozen_dtype=frozen_dtype(accelerator.mixed_precision),
                                   partial=ckpt is None)
    if args.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
        model.llm.llava.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model, optimizer, scheduler, state = prepare(args, accelerator, model, ckpt)

    llm = accelerator.unwrap_model(model).llm
    prompts = PromptBuilder(tokenizer, llm.image_token_id, llm.n_patches(), cfg.max_length,
                            cfg.prompt_format)
    featurizer = Featurizer(prompts, image_preprocess_config(cfg.llava, llm.vision_size), cfg.resolution, args.dropout_p)
    loader = make_loader(sources, featurizer, tokenizer.pad_token_id, args.batch_size, seed=args.seed,
                         workers=args.workers, skip_batches=state["batches"], shuffle_buffer=args.shuffle_buffer)
    if accelerator.is_main_process:
        log.info("stage 2%s; sources: %s", "b (with BIM)" if cfg.use_bim else "a (no BIM)",
                 ", ".join(f"{s.name} ({s.nsamples} samples, weight {s.weight:.3f})" for s in sources))

    def write_model(folder):
        save_model(accelerator.unwrap_model(model), tokenizer, cfg, folder, init_from=init_from)

    return run(args, accelerator=accelerator, model=model, optimizer=optimizer, scheduler=scheduler, loader=loader,
               state=state, write_model=write_model, weights={s.name: s.weight for s in sources}, desc="stage2")


def main(argv=None) -> dict:
    from trainer.options import cli_main

    return cli_main(train, parse_args, argv)


if __name__ == "__main__":
    main()
