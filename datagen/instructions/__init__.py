"""Instruction text: referring expressions (``referring``), colour names (``colors``), phrasing
templates (``templates``) and the reasoning knowledge table (``knowledge``).

Import the submodules directly; this package re-exports the referring-expression API that most
callers need and nothing heavy.
"""
from datagen.instructions.referring import (  # noqa: F401
    ATTRIBUTES,
    Referring,
    anchor_phrase,
    referring_expressions,
    referring_table,
    relation_to,
)
