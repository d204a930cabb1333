"""Detector and judge throughput with tiny random-init models on CPU, one image at a time vs batched;
and the SSIM of the post-edit checks, OpenCV box filters vs skimage.

    python bench/detection.py [--images 16] [--batch 8] [--pairs 8] [--judge-batch 4] [--threads 1]

Detectors: the tiny OWLv2 and Grounding DINO of the tests (real ``transformers`` classes, random
weights, loaded from disk by ``build_detector``) on demo scenes, three prompts. Judge: the tiny
LLaVA judge (``VlmJudge``) on source/target pairs, 8 new tokens per answer. Prints images (pairs)
per second for batch 1 and the batch size, and their ratio, measured in this one run. Tiny models
measure the pipeline's own overhead (pre/post-processing, NMS, padding, generate loop), not a
real model's compute; full-size models need a GPU run. SSIM: ``datagen.postedit.ssim_map`` vs
``skimage.metrics.structural_similarity`` on the same grey demo images (same values, see tests).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datagen.detection import build_detector  # noqa: E402
from datagen.judge import VlmJudge  # noqa: E402
from datagen.sources.demo import DemoScenes  # noqa: E402
from tests.tiny_quality_models import make_tiny_llava_judge, tiny_detector_dir  # noqa: E402

PROMPTS = ["cat", "cup", "coin"]


def rate(fn, n: int, repeats: int = 2) -> float:
    fn()  # warm-up: first-call allocations and lazy imports
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def ssim_speed(images) -> None:
    import cv2
    from skimage.metrics import structural_similarity

    from datagen.postedit import ssim_map

    greys = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in images]
    shifted = [np.roll(g, 3, axis=1) for g in greys]
    ours = rate(lambda: [ssim_map(a, b) for a, b in zip(greys, shifted)], len(greys))
    theirs = rate(lambda: [structural_similarity(a, b, win_size=7, data_range=255, full=True)
                           for a, b in zip(greys, shifted)], len(greys))
    print(f"SSIM map                  skimage: {theirs:7.1f} img/s   ours: {ours:7.1f} img/s   ratio {ours / theirs:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--judge-batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    scenes = DemoScenes(args.images, 3)
    images = [scenes.load(rid).image for rid in scenes.ids()]
    print(f"{len(images)} demo images, {images[0].shape[1]}x{images[0].shape[0]} px; {args.threads} torch thread(s)")
    for name in ("owlv2", "grounding_dino"):
        folder = tiny_detector_dir(name)
        speeds = {}
        for batch in (1, args.batch):
            detector = build_detector(name, model_dir=folder, threshold=0.1, batch_size=batch, device="cpu")
            speeds[batch] = rate(lambda: detector.detect(images, PROMPTS), len(images))
        print(f"detector {name:15s} batch 1: {speeds[1]:7.1f} img/s   batch {args.batch}: {speeds[args.batch]:7.1f} img/s"
              f"   ratio {speeds[args.batch] / speeds[1]:.2f}x")
    ssim_speed(images)
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_tiny_llava_judge(Path(tmp) / "judge")
        pairs = [(im, im[:, ::-1].copy(), f"Remove the cup number {i}") for i, im in enumerate(images[: args.pairs])]
        speeds = {}
        judge = VlmJudge.from_pretrained(folder, device="cpu", max_new_tokens=8)
        for batch in (1, args.judge_batch):
            judge.batch_size = batch
            speeds[batch] = rate(lambda: judge.judge(pairs), len(pairs))
        print(f"judge (tiny LLaVA)        batch 1: {speeds[1]:7.1f} pairs/s batch {args.judge_batch}: "
              f"{speeds[args.judge_batch]:7.1f} pairs/s ratio {speeds[args.judge_batch] / speeds[1]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
