"""``trainer.convert_official`` onto a base in the original LLaVA-1.1 code layout, and the official
prompt. The tiny base is written from LLaVA-1.1's key names (LLaMA ``model.layers.*`` + one linear
``model.mm_projector``, the tokenizer's ``<im_patch>``/``<im_start>``/``<im_end>``, CLIP in its own
folder); the reference forward below is the official one written from those names: CLIP's
second-to-last layer without CLS, one linear projector, the patches put where ``<img_0>`` was, the
release's embedding / ``lm_head`` rows and LoRA merged into LLaMA."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from tests.trainer.test_trainer_convert import _argv, release  # noqa: F401  (the release fixture)
from trainer import IMAGE_TOKENS
from trainer.tiny import TINY_LLM_HIDDEN, TINY_VISION_HIDDEN, TINY_VISION_SIZE

LLAVA11_TOKENS = ["<im_patch>", "<im_start>", "<im_end>"]
OFFICIAL_NEW = ["<img>", "<im_start>", "<im_end>", *IMAGE_TOKENS]  # the release's vocabulary order
INSTRUCTION = "Replace the smaller cat with a rabbit"
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant can generate <img>. "
          "The assistant needs to conduct the image to image translation task based on given image and text "
          "information. The assistant gives helpful, detailed, and polite answers to the user's questions.")


def _llama_config(vocab: int):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=TINY_LLM_HIDDEN, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=4, vocab_size=vocab, max_position_embeddings=512)


@pytest.fixture(params=["clip-folder", "tower-in-weights"])
def llava11(request, tmp_path):
    """A tiny LLaVA-1.1 folder (two .bin shards, the projector in the second like the 7B release) and
    the CLIP folder named by ``mm_vision_tower``. ``tower-in-weights``: the tower is in the shards
    (``model.vision_tower.vision_tower.vision_model.*``) and the CLIP folder's weights, different,
    must only give the configuration. ``tower`` is the folder with the weights the reference uses."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaForCausalLM

    from trainer.tiny import build_tokenizer

    torch.manual_seed(5)
    vision = CLIPVisionConfig(hidden_size=TINY_VISION_HIDDEN, intermediate_size=64, num_hidden_layers=3,
                              num_attention_heads=2, image_size=TINY_VISION_SIZE, patch_size=8)
    tower, clip = tmp_path / "tower", tmp_path / "clip-vit-tiny"
    CLIPVisionModel(vision).save_pretrained(tower)
    if request.param == "tower-in-weights":
        CLIPVisionModel(vision).save_pretrained(clip)  # other random weights: only its config may be used
    else:
        tower = tower.rename(clip)
    (clip / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3}))
    tok = build_tokenizer()
    tok.add_tokens(LLAVA11_TOKENS, special_tokens=True)
    folder = tmp_path / "LLaVA-tiny-v1.1"
    tok.save_pretrained(folder)
    llama = LlamaForCausalLM(_llama_config(len(tok))).state_dict()
    llama["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)  # saved by old transformers
    extra = {"model.mm_projector.weight": torch.randn(TINY_LLM_HIDDEN, TINY_VISION_HIDDEN) * 0.2,
             "model.mm_projector.bias": torch.randn(TINY_LLM_HIDDEN) * 0.1}
    if request.param == "tower-in-weights":
        extra.update({"model.vision_tower.vision_tower.vision_model." + k: v
                      for k, v in CLIPVisionModel.from_pretrained(str(tower)).state_dict().items()})
    keys = sorted(llama)
    torch.save({k: llama[k] for k in keys[: len(keys) // 2]}, folder / "pytorch_model-00001-of-00002.bin")
    torch.save({**{k: llama[k] for k in keys[len(keys) // 2:]}, **extra}, folder / "pytorch_model-00002-of-00002.bin")
    cfg = {**_llama_config(len(tok)).to_dict(), "model_type": "llava", "architectures": ["LlavaLlamaForCausalLM"],
           "mm_vision_tower": str(clip), "mm_hidden_size": TINY_VISION_HIDDEN, "mm_vision_select_layer": -2,
           "mm_use_im_start_end": True}
    (folder / "config.json").write_text(json.dumps(cfg))
    return {"folder": folder, "tower": tower, "llama": llama, "proj": extra, "tokenizer": tok}


def official_tokenizer():
    from trainer.tiny import build_tokenizer

    tok = build_tokenizer()
    tok.add_tokens(OFFICIAL_NEW)
    return tok


def reference_forward(llava11, release, ids: list[int], pixels: torch.Tensor):
    """The official forward on the unconverted weights: -> (hidden [1,L,H], logits [1,L,V_official])."""
    from transformers import CLIPVisionModel, LlamaForCausalLM

    tower = CLIPVisionModel.from_pretrained(str(llava11["tower"])).eval()
    feats = tower(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    # The official inference loads mm_projector from the release's embeddings_qformer file.
    patches = F.linear(feats, release["embeds"]["mm_projector.weight"], release["embeds"]["mm_projector.bias"])
    state = {k: v.clone() for k, v in llava11["llama"].items() if "inv_freq" not in k}
    for name, a in release["llm"].items():  # LoRA merged: W + (alpha / r) B A, alpha 16, r 8
        if name.endswith("lora_A.weight"):
            target = name.replace("model.base_model.model.", "model.").replace(".lora_A.weight", ".weight")
            state[target] += 2.0 * release["llm"][name.replace("lora_A", "lora_B")] @ a
    embed = release["llm"]["model.base_model.model.embed_tokens.weight"]
    head = release["embeds"]["lm_head.weight"]
    llama = LlamaForCausalLM(_llama_config(embed.shape[0])).eval()
    state["model.embed_tokens.weight"], state["lm_head.weight"] = embed, head
    llama.load_state_dict(state)
    at = ids.index(official_tokenizer().convert_tokens_to_ids("<img_0>"))
    tokens = torch.tensor(ids[:at] + ids[at + 1:])
    embeds = embed[tokens]
    embeds = torch.cat([embeds[:at], patches[0], embeds[at:]])[None]
    hidden = llama.model(inputs_embeds=embeds).last_hidden_state
    return hidden, hidden @ head.T


def test_llava11_base_converts_and_matches_the_official_forward(llava11, release, tiny_base, tmp_path):  # noqa: F811
    from trainer.convert_official import main
    from trainer.models.build import build_model, read_checkpoint_config
    from trainer.prompts import PromptBuilder

    argv = _argv(release, tiny_base, tmp_path / "converted")
    argv[argv.index("--llava") + 1] = str(llava11["folder"])
    ckpt = main(argv)
    cfg = read_checkpoint_config(ckpt)
    assert cfg.prompt_format == "official" and cfg.llava == str(ckpt / "llava_base")
    model, tok = build_model(cfg, ckpt=ckpt)
    model.eval()
    # LLaVA-1.1's ids are kept; <im_patch> is the image placeholder; 16 patches (CLS dropped).
    assert tok.convert_tokens_to_ids(LLAVA11_TOKENS) == llava11["tokenizer"].convert_tokens_to_ids(LLAVA11_TOKENS)
    assert model.llm.image_token_id == tok.convert_tokens_to_ids("<im_patch>") and model.llm.n_patches() == 16
    prompts = PromptBuilder(tok, model.llm.image_token_id, model.llm.n_patches(), cfg.max_length, cfg.prompt_format)
    tokens = tok.convert_ids_to_tokens(prompts.edit_prompt(INSTRUCTION))
    at = tokens.index("<im_patch>")
    assert tokens[at - 1:at + 17] == ["<im_start>"] + ["<im_patch>"] * 16 + ["<im_end>"]
    # The same tokens in the release's vocabulary, <img_0> where the patches go (the official input).
    ids = tok.convert_tokens_to_ids(tokens)
    official_ids = official_tokenizer().convert_tokens_to_ids(tokens[:at] + ["<img_0>"] + tokens[at + 16:])
    # Same hidden states and logits as the official forward on the unconverted weights.
    pixels = torch.randn(1, 3, TINY_VISION_SIZE, TINY_VISION_SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref_hidden, ref_logits = reference_forward(llava11, release, official_ids, pixels)
        input_ids = torch.tensor([ids])
        hidden, logits, _ = model.llm(input_ids, torch.ones_like(input_ids), model.llm.vision_features(pixels))
    # 1e-4: the reference merges LoRA into W, ours adds B(Ax); float sums in another order.
    torch.testing.assert_close(hidden, ref_hidden, atol=1e-4, rtol=1e-4)
    base = release["base_rows"]
    ours = list(range(base)) + tok.convert_tokens_to_ids(OFFICIAL_NEW)
    torch.testing.assert_close(logits[..., ours], ref_logits, atol=1e-3, rtol=1e-4)  # logits ~10


def test_llava11_refusals_name_the_key_and_the_option(llava11, tmp_path):
    from trainer.llava11 import convert_llava11, is_llava11

    assert is_llava11(llava11["folder"]) and not is_llava11(llava11["tower"])
    config = llava11["folder"] / "config.json"
    cfg = json.loads(config.read_text())
    config.write_text(json.dumps({**cfg, "mm_vision_tower": "openai/clip-vit-large-patch14"}))
    with pytest.raises(FileNotFoundError, match="clip-vit-large-patch14', which is not a local folder; pass --clip"):
        convert_llava11(llava11["folder"], tmp_path / "no-clip")
    config.write_text(json.dumps(cfg))
    stray = llava11["folder"] / "pytorch_model-00003-of-00003.bin"
    torch.save({"model.mm_projector.extra.weight": torch.ones(2)}, stray)
    with pytest.raises(ValueError, match="key model.mm_projector.extra.weight is not part of the LLaVA-1.1 layout"):
        convert_llava11(llava11["folder"], tmp_path / "out")


@pytest.fixture
def sentencepiece_llava11_tokenizer(tmp_path):
    """A LLaMA-style SentencePiece tokenizer (BPE, byte fallback, word-start mark) in a LLaVA-1.1
    folder with ``<im_patch>``/``<im_start>``/``<im_end>``; returns (folder, SentencePieceProcessor)."""
    import io

    import sentencepiece as spm
    from transformers import AutoTokenizer

    corpus = [SYSTEM, INSTRUCTION, "USER: ASSISTANT: Could you produce an image based on the previous image",
              "Certainly, I can create the image you requested. Sure, here is the image."]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus * 3), model_writer=model, vocab_size=400,
                                   model_type="bpe", byte_fallback=True, add_dummy_prefix=True, unk_id=0, bos_id=1,
                                   eos_id=2, pad_id=-1, minloglevel=2)
    folder = tmp_path / "llava11-tokenizer"
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "model_max_length": 2048}))
    tok = AutoTokenizer.from_pretrained(str(folder))
    tok.add_tokens(LLAVA11_TOKENS, special_tokens=True)
    tok.save_pretrained(folder)
    return folder, spm.SentencePieceProcessor(model_proto=model.getvalue())


def test_official_prompt_tokenises_as_the_official_slow_tokenizer(sentencepiece_llava11_tokenizer):
    """The official code (transformers 4.28, ``use_fast=False``) splits at added tokens, drops the
    whitespace next to them and runs SentencePiece on each piece of text; the expected pieces are
    written out here and encoded with the ``sentencepiece`` library itself."""
    import random

    from trainer.models.llava import add_image_tokens, load_tokenizer
    from trainer.prompts import PromptBuilder, official_edit_templates

    folder, sp = sentencepiece_llava11_tokenizer
    tok = load_tokenizer(folder)
    add_image_tokens(tok)
    builder = PromptBuilder(tok, tok.convert_tokens_to_ids("<im_patch>"), 16, 1024, "official")
    head, rest = SYSTEM.split(" <img>")
    text = rest + ' USER: Could you produce an image based on the previous image and text description "'
    tail = f'{INSTRUCTION}"? ASSISTANT:'
    expected = (["<s>"] + sp.encode(head, out_type=str) + ["<img>"] + sp.encode(text, out_type=str)
                + ["<im_start>"] + ["<im_patch>"] * 16 + ["<im_end>"] + sp.encode(tail, out_type=str))
    assert tok.convert_ids_to_tokens(builder.edit_prompt(INSTRUCTION)) == expected
    # Training: the answer continues the last piece of text, then the 32 image tokens and </s>.
    human, gpt = official_edit_templates()[random.Random(0).randrange(30)]
    sample = builder.edit_sample(INSTRUCTION, random.Random(0))
    answer = [t for t, label in zip(sample.input_ids, sample.labels) if label != -100]
    tail = human.split("[cap]")[1] + " ASSISTANT:"
    words = f'{INSTRUCTION}"{tail} {gpt.replace(" [img].", "")}'
    reply = sp.encode(words, out_type=str)[len(sp.encode(f'{INSTRUCTION}"{tail}', out_type=str)):]
    assert tok.convert_ids_to_tokens(answer) == reply + list(IMAGE_TOKENS) + ["</s>"]


def test_official_training_sample_labels_the_answer_and_image_tokens(tiny_base):
    import random

    from trainer.models.llava import add_image_tokens, load_tokenizer
    from trainer.prompts import PromptBuilder, official_edit_templates

    tok = load_tokenizer(tiny_base["llava"])
    add_image_tokens(tok)
    patch = tok.convert_tokens_to_ids("<image>")
    # max_length 1024: the tiny byte-level vocabulary spends about a token per character of the system prompt.
    sample = PromptBuilder(tok, patch, 16, 1024, "official").edit_sample(INSTRUCTION, random.Random(0))
    answer = [t for t, label in zip(sample.input_ids, sample.labels) if label != -100]
    assert tok.convert_ids_to_tokens(answer[-33:]) == [*IMAGE_TOKENS, "</s>"] and sample.input_ids.count(patch) == 16
    replies = {gpt.replace(" [img].", "") for _, gpt in official_edit_templates()}
    assert len(replies) == 30 and tok.decode(answer[:-33]).strip() in replies
    with pytest.raises(ValueError, match="--prompt-format 'paper'"):
        PromptBuilder(tok, patch, 16, 320, "paper")


def test_stage2_records_the_prompt_format_and_edit_uses_it(dataset, train_argv, tmp_path):
    from trainer.edit import Editor
    from trainer.models.build import read_checkpoint_config
    from trainer.stage2 import main

    out = tmp_path / "run"
    summary = main(train_argv(dataset, out, "--max-steps", "1", "--prompt-format", "official", "--max-length", "1024"))
    assert read_checkpoint_config(summary["checkpoint"]).prompt_format == "official"
    editor = Editor(summary["checkpoint"], device="cpu")
    ids = editor.prompts.edit_prompt(INSTRUCTION)
    assert editor.prompts.format == "official"
    assert editor.tokenizer.decode(ids).count("The assistant can generate<img>. The assistant needs to conduct") == 1
    with pytest.raises(SystemExit, match="--prompt-format 'paper': expected one of ours, official"):
        main(train_argv(dataset, tmp_path / "bad", "--max-steps", "1", "--prompt-format", "paper"))
