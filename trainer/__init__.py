"""SmartEdit trainer (paper §4.1-4.2, §5.1): model parts, data, training, inference, metrics.

Apart from the data library (open_clip style): it reads shards through the manifest contract
(``docs/ARCHITECTURE.md``) and never imports ``datagen``. Entry points:
``python -m trainer.stage1`` (alignment), ``python -m trainer.stage2`` (2a ``--no-bim`` / 2b),
``python -m trainer.edit`` (edit one image),
``python -m trainer.evaluate`` (Reason-Edit style metrics). Heavy imports happen inside functions.
"""

IMAGE_TOKENS = tuple(f"<img_{i}>" for i in range(32))
IMAGE_MARKER = "<img>"
IGNORE_INDEX = -100
