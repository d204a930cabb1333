"""The world-knowledge table, the uniqueness rule, the reasoning templates and the LLM rewrite check."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from datagen.instructions.knowledge import default_knowledge, load_knowledge, normalize
from datagen.instructions.reasoning_rewrite import InstructionRewriter, check_rewrite, clean_output
from datagen.instructions.reasoning_templates import (
    TEMPLATES,
    noun_phrase,
    question,
    reasoning_instruction,
    this_phrase,
)
from datagen.instructions.referring import Referring

sys.path.insert(0, str(Path(__file__).parent))

# The 80 COCO instance categories, written out here as an independent source of truth.
COCO_80 = """person bicycle car motorcycle airplane bus train truck boat|traffic light|fire hydrant|stop sign|
parking meter|bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag tie
suitcase frisbee skis snowboard|sports ball|kite|baseball bat|baseball glove|skateboard surfboard|
tennis racket|bottle|wine glass|cup fork knife spoon bowl banana apple sandwich orange broccoli carrot|
hot dog|pizza donut cake chair couch|potted plant|bed|dining table|toilet tv laptop mouse remote keyboard|
cell phone|microwave oven toaster sink refrigerator book clock vase scissors|teddy bear|hair drier|toothbrush"""


def _coco_names() -> list[str]:
    names = []
    for chunk in COCO_80.replace("\n", " ").split("|"):
        chunk = chunk.strip()
        if chunk in {"traffic light", "fire hydrant", "stop sign", "parking meter", "sports ball", "baseball bat",
                     "baseball glove", "tennis racket", "wine glass", "hot dog", "potted plant", "dining table",
                     "cell phone", "teddy bear", "hair drier"}:
            names.append(chunk)
        else:
            names.extend(chunk.split())
    return names


DEMO = ("cat", "cup", "rocket", "person", "coin", "horse")


def test_table_covers_coco_and_demo_with_several_sound_descriptions():
    table = default_knowledge()
    coco = _coco_names()
    assert len(coco) == 80 and len(set(coco)) == 80
    for category in [*coco, *DEMO]:
        descriptions = table.descriptions(category)
        assert len(descriptions) >= 2, category
        for d in descriptions:
            assert d.fits[0] == category and d.kind in ("object", "animal", "food", "vehicle", "person", "plant")
            assert all(other in table for other in d.fits), d
    assert table.problems() == []
    summary = table.summary()
    assert summary["categories"] >= 82 and summary["descriptions"] >= 2 * 82


def test_a_description_that_names_its_own_category_is_refused():
    with pytest.raises(ValueError, match="names its own category"):
        default_knowledge().merged({"categories": {"clock": {"kind": "object", "descriptions": [
            {"predicate": "is a clock on the wall"}, {"predicate": "ticks"}]}}})
    with pytest.raises(ValueError, match="no description"):
        default_knowledge().merged({"categories": {"clock": {"kind": "object", "descriptions": []}}})
    with pytest.raises(ValueError, match="unknown category"):
        default_knowledge().merged({"categories": {"clock": {"kind": "object", "descriptions": [
            {"predicate": "ticks", "also_fits": ["sundial"]}]}}})


def test_uniqueness_rule_never_uses_a_description_another_present_category_fits():
    table = default_knowledge()
    ride = "can be ridden"
    assert ride in [d.predicate for d in table.usable("horse", {"horse", "cat"})]
    assert ride not in [d.predicate for d in table.usable("horse", {"horse", "elephant"})]
    assert "can tell the time" not in [d.predicate for d in table.usable("clock", {"clock", "cell phone"})]
    # Exhaustively, for every pair of categories in one image.
    names = list(table.categories)
    for category in names:
        for other in names:
            for d in table.usable(category, {category, other}):
                assert other == category or other not in d.fits, (category, other, d)


def test_choose_gives_reasons_when_nothing_is_usable():
    table = default_knowledge()
    assert table.choose("unicorn", {"unicorn"}).reason == "no_description"
    assert table.choose("clock", {"clock", "rabbit"}).reason == "unknown_neighbour"
    both = table.choose("mouse", {"mouse", "laptop"})  # every mouse description also fits a laptop
    assert both.reason == "ambiguous_description" and "laptop" in both.detail and both.usable == ()
    assert table.choose("mouse", {"mouse", "cat"}).reason is None


def test_aliases_and_spelling_resolve_to_the_table_names():
    table = default_knowledge()
    assert table.resolve("Motorbike") == "motorcycle" and table.resolve("Dining  Table") == "dining table"
    assert normalize("potted_plant") == "potted plant"
    assert table.usable("tvmonitor", {"tvmonitor", "sofa"})  # VOC names on both sides
    assert table.noun("tv") == "TV" and table.noun("unicorn") == "unicorn"


def test_load_knowledge_extends_the_table_from_json(tmp_path):
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"categories": {"Rabbit": {"kind": "animal", "descriptions": [
        {"predicate": "hops and has long ears", "also_fits": []},
        {"predicate": "is pulled out of a magician's hat", "also_fits": ["cat"]}]}}}))
    table = load_knowledge(extra)
    assert [d.predicate for d in table.usable("rabbit", {"rabbit", "cat"})] == ["hops and has long ears"]
    assert table.choose("clock", {"clock", "rabbit"}).reason is None  # a known neighbour now
    assert table.fingerprint() != default_knowledge().fingerprint()
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_knowledge(bad)


def _description(category: str, predicate: str):
    return next(d for d in default_knowledge().descriptions(category) if d.predicate == predicate)


def test_templates_produce_the_papers_forms():
    orange = _description("orange", "has the most vitamin C")
    umbrella = _description("umbrella", "can help people prevent sunburn")
    fork = _description("fork", "can be used to eat the cake")
    cow = _description("cow", "gives us milk")
    all_of = lambda op, d, value="": reasoning_instruction(op, d, value=value, seed=0, key=("k",)).all()  # noqa: E731
    assert "Please remove the object that can be used to eat the cake." in all_of("remove", fork)
    assert "What is the object that can help people prevent sunburn? Change it into blue." in all_of(
        "recolor", umbrella, "blue")
    assert "Which animal gives us milk? Add a hat on this animal." in all_of("addon", cow, "hat")
    assert "Which food has the most vitamin C? Please replace this food with an apple." in all_of(
        "replace", orange, "apple")
    assert "Replace the animal that gives us milk with an apple." in all_of("replace", cow, "apple")


def test_templates_for_people_and_referring_narrowing():
    driver = _description("person", "can drive a car")
    assert question(driver) == "Who can drive a car?" and this_phrase(driver) == "this person"
    left = Referring("location", "left", "the left person")
    assert noun_phrase(driver, left) == "the left one who can drive a car"
    texts = reasoning_instruction("recolor", driver, value="red", referring=left, seed=0).all()
    assert "Who can drive a car? Change the left one into red." in texts
    assert not any(t.startswith("What is") for t in texts)
    replaced = reasoning_instruction("replace", driver, value="robot", seed=0).all()
    assert "Who is the one who can drive a car? Turn them into a robot." in replaced
    cat = _description("cat", "purrs")
    mirror = Referring("mirror", "in_mirror", "the cat in the mirror")
    assert noun_phrase(cat, mirror) == "the animal in the mirror that purrs"
    assert "Which animal purrs? Please remove the one in the mirror." in reasoning_instruction(
        "remove", cat, value="", referring=mirror, seed=0).all()
    single = Referring("count", "single", "the cat")
    assert noun_phrase(cat, single) == "the animal that purrs"


def test_instructions_never_name_the_category_and_choice_is_seeded():
    table = default_knowledge()
    for entry in table.categories.values():
        head = entry.category.split()[-1]
        for d in entry.descriptions:
            if head == d.kind:  # "Who can drive a car? Remove this person.": the kind noun is the class
                continue
            for op in TEMPLATES:
                for text in reasoning_instruction(op, d, value="blue", seed=0).all():
                    assert head not in text.lower().replace("?", " ").replace(".", " ").split(), (d, text)
    d = _description("clock", "can tell the time")
    a = reasoning_instruction("remove", d, value="", seed=3, key=("img", "1"))
    assert a == reasoning_instruction("remove", d, value="", seed=3, key=("img", "1"))
    chosen = {reasoning_instruction("remove", d, value="", seed=3, key=("img", str(i))).instruction for i in range(40)}
    assert len(chosen) == len(TEMPLATES["remove"])  # the key spreads the phrasings over a dataset
    with pytest.raises(ValueError):
        reasoning_instruction("explode", d, value="", seed=0)


# ---------------------------------------------------------------------- LLM rewrite


ORIGINAL = "What is the object that can help people prevent sunburn? Change it into blue."
CHECK = dict(keep=["blue"], avoid=["umbrella"], anchor="can help people prevent sunburn")


def test_rewrite_check_accepts_a_faithful_paraphrase():
    good = "Find the thing that helps people prevent sunburn and make it blue."
    assert check_rewrite(ORIGINAL, good, **CHECK) is None
    assert clean_output('  "Rewrite: Paint the sunburn helper blue."\nmore') == "Paint the sunburn helper blue."


@pytest.mark.parametrize("candidate, reason", [
    ("", "empty"),
    ("@@@ ### $$$ %%% ^^^ &&& *** ((( )))", "garbage"),
    ("blue", "length"),
    ("Make the umbrella that helps prevent sunburn blue.", "names_object"),
    ("Make the thing that can help people prevent sunburn red.", "lost_value"),
    ("Make the object on the left side of the picture blue please.", "lost_meaning"),
    ("blue blue blue blue blue sunburn people help", "repetitive"),
    (ORIGINAL.lower(), "unchanged"),
])
def test_rewrite_check_rejects(candidate, reason):
    assert check_rewrite(ORIGINAL, candidate, **CHECK) == reason


def _save_tiny_causal_lm(folder: Path) -> Path:
    """A random-init GPT-2 (one layer, 32-dim) with a byte-level tokenizer, saved like real weights."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|endoftext|>": 0, **{ch: i + 1 for i, ch in enumerate(alphabet)}}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=512, n_embd=32, n_layer=1, n_head=2,
                                       bos_token_id=0, eos_token_id=0))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_tiny_random_lm_rewrites_are_rejected_and_the_original_kept(tmp_path):
    from tiny_models import torch_threads

    with torch_threads(1):
        rewriter = InstructionRewriter.from_pretrained(_save_tiny_causal_lm(tmp_path / "lm"), device="cpu",
                                                       max_new_tokens=24)
        proposal = rewriter.propose(ORIGINAL, seed=1)
        assert proposal == rewriter.propose(ORIGINAL, seed=1)  # seeded
        assert check_rewrite(ORIGINAL, proposal, **CHECK) is not None  # random weights: not a rewrite
        assert rewriter.rewrite(ORIGINAL, seed=1, **CHECK) == ORIGINAL
    assert sum(rewriter.stats.values()) == 1 and "accepted" not in rewriter.stats
    assert rewriter.settings()["model_dir"]["sha256"]
