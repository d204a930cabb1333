"""Understanding-scenario samples: remove / add / replace with unique referring expressions.

* ``UnderstandingBuilder`` (``builder``): the builder; its module docstring describes the
  pipeline (mask -> inpaint -> paste -> harmonize), the samples and every skip reason.
* ``build_understanding`` / ``parse_options`` (``factory``): the builder from backend names.
* ``load_donors`` / ``prepare_donors`` (``donors``): the objects pasted in by ``replace``.
"""
from datagen.understanding.builder import BORDER_POLICIES, OPS, UnderstandingBuilder
from datagen.understanding.donors import Donor, PreparedDonor, load_donors, prepare_donors
from datagen.understanding.factory import build_understanding, parse_options

__all__ = [
    "BORDER_POLICIES",
    "OPS",
    "Donor",
    "PreparedDonor",
    "UnderstandingBuilder",
    "build_understanding",
    "load_donors",
    "parse_options",
    "prepare_donors",
]
