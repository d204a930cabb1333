"""The VLM judge: answers parsed strictly; a tiny random-init LLaVA through the real loading,
prompting and batched generation code; its verdict recorded on the sample."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from datagen.backends import BackendUnavailable
from datagen.judge import JudgeVerdict, VlmJudge, parse_verdict
from tests.tiny_models import torch_threads
from tests.tiny_quality_models import make_tiny_llava_judge


@pytest.mark.parametrize("text, expected", [
    ("Score: 4. Reason: the cup is gone", JudgeVerdict(4, "the cup is gone")),
    ("score 2 - the wrong cat was removed\nmore text", JudgeVerdict(2, "the wrong cat was removed")),
    ("  5) perfect edit", JudgeVerdict(5, "perfect edit")),
    ("I rate it 3 out of 5", JudgeVerdict(3, "out of 5")),
    ("Score: 7. Reason: too high", JudgeVerdict(None, "Score: 7. Reason: too high")),
    ("looks fine, 2.5 maybe", JudgeVerdict(None, "looks fine, 2.5 maybe")),
    ("", JudgeVerdict(None, "")),
])
def test_parse_verdict(text, expected):
    assert parse_verdict(text) == expected


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    return make_tiny_llava_judge(tmp_path_factory.mktemp("judge") / "llava")


def _pairs(n: int):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        src = rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8)
        out.append((src, np.ascontiguousarray(src[:, ::-1]), "Remove the cup" + " on the left" * i))
    return out


def test_batched_judging_equals_one_at_a_time(judge_dir):
    """Prompts of different lengths in one batch: with left padding, greedy answers are those of
    the single-prompt runs (right padding would make the model continue after pad tokens)."""
    with torch_threads(1):
        batched = VlmJudge.from_pretrained(judge_dir, device="cpu", batch_size=3, max_new_tokens=6)
        single = VlmJudge(batched.model, batched.processor, model_dir=str(judge_dir), batch_size=1, max_new_tokens=6)
        pairs = _pairs(3)
        texts_batched = batched._generate(pairs)
        texts_single = [single._generate([p])[0] for p in pairs]
        assert texts_batched == texts_single
        assert len(batched.judge(pairs)) == 3
    prompt = batched.prompt("Remove the cup")
    assert prompt.count("<image>") == 2 and '"Remove the cup"' in prompt and prompt.endswith("ASSISTANT:")
    assert batched.settings()["model"]["sha256"]


def test_judge_verdict_lands_in_the_sample(judge_dir):
    from datagen.quality import QualityChecker
    from datagen.schema import EditSample

    src, tgt, text = _pairs(1)[0]
    mask = np.zeros(src.shape[:2], bool)
    mask[10:30, 10:30] = True
    sample = EditSample(key="k", src=src, tgt=tgt, mask=mask, instruction=text, scenario="reasoning", op="remove",
                        target={"category": "cup", "box": [10.0, 10.0, 30.0, 30.0]})
    with torch_threads(1):
        checker = QualityChecker(judge=str(judge_dir))
        out = checker.attach_post_edit(dataclasses.replace(sample), skip_id="x")
    judged = out.quality["judge"]
    assert set(judged) == {"score", "reason", "model"}
    expected = 0 if judged["score"] is None else judged["score"]
    assert out.quality["scores"]["judge_score"] == expected
    assert ("judge" in out.quality["post_edit"]["failed"]) == (expected < 3)
    assert checker.settings()["post_edit"]["judge"].startswith("judge:")


def test_missing_judge_weights_fail_in_one_sentence(tmp_path):
    with pytest.raises(BackendUnavailable, match=r"quality\.judge=PATH"):
        VlmJudge.from_pretrained(None)
    with pytest.raises(BackendUnavailable, match="not an existing folder"):
        VlmJudge.from_pretrained(tmp_path / "none")


def test_judge_cli_scores_waiting_queue_items(judge_dir, tmp_path, capsys):
    import json

    from datagen.cli import main
    from datagen.reasoning.queue import open_queue
    from datagen.schema import EditSample

    store = open_queue(tmp_path / "q")
    samples = []
    for i, (src, tgt, text) in enumerate(_pairs(3)):
        mask = np.zeros(src.shape[:2], bool)
        mask[5:20, 5:20] = True
        samples.append(EditSample(key=f"k{i}", src=src, tgt=tgt, mask=mask, instruction=text, scenario="reasoning",
                                  op="remove", target={"category": "cup"}, quality={"scores": {"ssim_outside": 1.0}}))
    store.add_many(samples)
    store.close()
    with torch_threads(1):
        code = main(["judge", "--db", str(tmp_path / "q"), "--model", str(judge_dir), "--batch-size", "2",
                     "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out)["judged"] == 3
    store = open_queue(tmp_path / "q")
    with store.db.read() as tx:
        metas = [json.loads(m) for (m,) in tx.all("SELECT meta FROM items ORDER BY id")]
    store.close()
    for meta in metas:
        assert meta["quality"]["scores"]["ssim_outside"] == 1.0  # what was there stays
        assert meta["quality"]["scores"]["judge_score"] == (meta["quality"]["judge"]["score"] or 0)
    with torch_threads(1):
        assert main(["judge", "--db", str(tmp_path / "q"), "--model", str(judge_dir), "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["judged"] == 0, "judged items are not judged again"
    assert main(["judge", "--db", str(tmp_path / "q"), "--model", str(tmp_path / "nope")]) == 2
