"""SmartEdit stage-1 alignment: ``python -m trainer.stage1 --shards CAPTION_DATA``.

Aligns LLaVA's LLM + the 32 image tokens + the QFormer to the SD folder's CLIP text encoder on
captions (CC12M in the paper), read from img2dataset's WebDataset output or from Parquet
(``trainer.captions``). Defaults follow the official stage-1 script: AdamW lr 2e-4, weight decay
0, warm-up ratio 0.04, cosine schedule, LM : alignment loss 1 : 1. The checkpoint (tokenizer,
adapter with the new token rows, QFormer) is what ``trainer.stage2 --no-bim --init-from`` starts from.
With no ``--llava``/``--sd`` it builds the tiny random-init configuration so it runs on a CPU.
"""
from __future__ import annotations

import argparse
import logging
import random

log = logging.getLogger("trainer.stage1")


def parse_args(argv=None) -> argparse.Namespace:
    from trainer.options import add_model_options, add_training_options

    p = argparse.ArgumentParser(prog="python -m trainer.stage1", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--shards", action="append", default=[], required=True,
                   help="img2dataset webdataset folder or .tar, or a Parquet file / folder of them; repeatable")
    d.add_argument("--caption-column", default="", help="Parquet caption column (default: caption, text, txt or TEXT)")
    add_model_options(p)
    add_training_options(p, output="runs/stage1", lr=2e-4, warmup_ratio=0.04, schedule="cosine")
    return p.parse_args(argv)


def train(args) -> dict:
    """Run stage 1; returns the loop's summary."""
    import torch

    from trainer.captions import CaptionFeaturizer, caption_sources
    from trainer.data import make_loader
    from trainer.loop import frozen_dtype, make_accelerator, prepare, run
    from trainer.models.align import build_align_model
    from trainer.models.build import save_trainable_parts, write_config
    from trainer.options import start_point
    from trainer.prompts import PromptBuilder

    ckpt, cfg, init_from, finished = start_point(args, None)
    if finished:
        return finished
    sources = caption_sources(args.shards)
    accelerator = make_accelerator(args, "stage1")
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    model, tokenizer, clip_tok = build_align_model(cfg, ckpt or (args.init_from or None),
                                                   frozen_dtype(accelerator.mixed_precision))
    if args.gradient_checkpointing:
        model.llm.llava.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model, optimizer, scheduler, state = prepare(args, accelerator, model, ckpt)
    llm = accelerator.unwrap_model(model).llm
    prompts = PromptBuilder(tokenizer, llm.image_token_id, llm.n_patches(), cfg.max_length)
    featurizer = CaptionFeaturizer(prompts, clip_tok, cfg.num_queries, args.caption_column)
    loader = make_loader(sources, featurizer, tokenizer.pad_token_id, args.batch_size, seed=args.seed,
                         workers=args.workers, skip_batches=state["batches"], shuffle_buffer=args.shuffle_buffer)
    if accelerator.is_main_process:
        log.info("stage 1 (alignment); sources: %s", ", ".join(f"{s.name} ({s.kind})" for s in sources))

    def write_model(folder):
        unwrapped = accelerator.unwrap_model(model)
        save_trainable_parts(folder, tokenizer, unwrapped.llm, {"qformer": unwrapped.qformer})
        write_config(cfg, folder, stage=1, init_from=init_from)

    return run(args, accelerator=accelerator, model=model, optimizer=optimizer, scheduler=scheduler, loader=loader,
               state=state, write_model=write_model, weights={s.name: s.weight for s in sources}, desc="stage1")


def main(argv=None) -> dict:
    from trainer.options import cli_main

    return cli_main(train, parse_args, argv)


if __name__ == "__main__":
    main()
