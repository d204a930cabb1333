"""``trainer.convert_official`` on tiny checkpoints written in the released layout. The fixture's key
names follow the official code (SmartEdit's ``DS_SmartEdit_model.py`` / ``LLMSD_QFormerv01.py``,
SAM's two-way transformer); the BIM's output is checked against a reference forward written here
from those names (SAM's mask-decoder transformer), not against our module."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainer.tiny import TINY_ARCH, TINY_CROSS_DIM, TINY_LLM_HIDDEN, TINY_VISION_HIDDEN

D, MLP, INNER = TINY_VISION_HIDDEN, TINY_ARCH["bim_mlp"], TINY_VISION_HIDDEN // 2  # BIM width, MLP, cross-attn width


def _linear(prefix, n_in, n_out, g):
    return {f"{prefix}.weight": torch.randn(n_out, n_in, generator=g) * 0.2, f"{prefix}.bias": torch.randn(n_out, generator=g) * 0.1}


def _attn(prefix, inner, g):
    out = {}
    for name in ("q_proj", "k_proj", "v_proj"):
        out.update(_linear(f"{prefix}.{name}", D, inner, g))
    out.update(_linear(f"{prefix}.out_proj", inner, D, g))
    return out


def _norm(prefix, g):
    return {f"{prefix}.weight": 1 + 0.1 * torch.randn(D, generator=g), f"{prefix}.bias": 0.1 * torch.randn(D, generator=g)}


def official_bim(g) -> dict:
    w = {**_linear("modulate_head", TINY_CROSS_DIM, D, g),
         "pe_layer.positional_encoding_gaussian_matrix": torch.randn(2, D // 2, generator=g),
         "dimension_reduction_head_zeroconv.weight": torch.randn(32, D, 1, 1, generator=g) * 0.2,
         "dimension_reduction_head_zeroconv.bias": torch.randn(32, generator=g) * 0.1,
         **_linear("dimension_reduction_head_qformer_out", D, TINY_CROSS_DIM, g),
         **_attn("modulate_transformer.final_attn_token_to_image", INNER, g),
         **_norm("modulate_transformer.norm_final_attn", g)}
    for i in range(TINY_ARCH["bim_depth"]):
        p = f"modulate_transformer.layers.{i}"
        w.update(_attn(f"{p}.self_attn", D, g))
        w.update(_attn(f"{p}.cross_attn_token_to_image", INNER, g))
        w.update(_attn(f"{p}.cross_attn_image_to_token", INNER, g))
        w.update(_linear(f"{p}.mlp.lin1", D, MLP, g))
        w.update(_linear(f"{p}.mlp.lin2", MLP, D, g))
        for n in range(1, 5):
            w.update(_norm(f"{p}.norm{n}", g))
    return w


def official_qformer(g, prefix="sd_qformer", queries="sd_query_tokens") -> dict:
    h, inter, width = TINY_CROSS_DIM, TINY_ARCH["qformer_intermediate"], TINY_LLM_HIDDEN
    w = {queries: torch.randn(1, 77, h, generator=g) * 0.02,
         f"{prefix}.embeddings.LayerNorm.weight": torch.ones(h), f"{prefix}.embeddings.LayerNorm.bias": torch.zeros(h)}
    for i in range(TINY_ARCH["qformer_layers"]):
        p = f"{prefix}.encoder.layer.{i}"
        blocks = [("attention", h)] + ([("crossattention", width)] if i % 2 == 0 else [])
        for block, kv in blocks:
            w.update(_linear(f"{p}.{block}.self.query", h, h, g))
            w.update(_linear(f"{p}.{block}.self.key", kv, h, g))
            w.update(_linear(f"{p}.{block}.self.value", kv, h, g))
            w.update(_linear(f"{p}.{block}.output.dense", h, h, g))
            w[f"{p}.{block}.output.LayerNorm.weight"], w[f"{p}.{block}.output.LayerNorm.bias"] = torch.ones(h), torch.zeros(h)
        w.update(_linear(f"{p}.intermediate_query.dense", h, inter, g))
        w.update(_linear(f"{p}.output_query.dense", inter, h, g))
        w[f"{p}.output_query.LayerNorm.weight"], w[f"{p}.output_query.LayerNorm.bias"] = torch.ones(h), torch.zeros(h)
    return w


def reference_bim(w: dict, text: torch.Tensor, vision: torch.Tensor, latent: int):
    """SAM's TwoWayTransformer + SmartEdit's BIM head, from the official key names (heads=2)."""
    def lin(x, p):
        return F.linear(x, w[p + ".weight"], w[p + ".bias"])

    def attn(p, q, k, v, heads=TINY_ARCH["bim_heads"]):
        q, k, v = lin(q, p + ".q_proj"), lin(k, p + ".k_proj"), lin(v, p + ".v_proj")
        b, n, c = q.shape
        split = lambda x: x.reshape(b, -1, heads, c // heads).transpose(1, 2)  # noqa: E731
        a = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(c // heads), dim=-1) @ split(v)
        return lin(a.transpose(1, 2).reshape(b, n, c), p + ".out_proj")

    def norm(x, p):
        return F.layer_norm(x, (D,), w[p + ".weight"], w[p + ".bias"])

    b, n, _ = vision.shape
    side = int(math.sqrt(n))
    coords = (torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="xy"), -1) + 0.5) / side
    pe = 2 * math.pi * ((2 * coords - 1) @ w["pe_layer.positional_encoding_gaussian_matrix"])
    key_pe = torch.cat([pe.sin(), pe.cos()], -1).reshape(1, n, D)
    queries = lin(text, "modulate_head")
    query_pe, keys = queries, vision
    for i in range(TINY_ARCH["bim_depth"]):
        p = f"modulate_transformer.layers.{i}"
        if i == 0:
            queries = attn(p + ".self_attn", queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + attn(p + ".self_attn", q, q, queries)
        queries = norm(queries, p + ".norm1")
        queries = norm(queries + attn(p + ".cross_attn_token_to_image", queries + query_pe, keys + key_pe, keys), p + ".norm2")
        mlp = lin(F.relu(lin(queries, p + ".mlp.lin1")), p + ".mlp.lin2")
        queries = norm(queries + mlp, p + ".norm3")
        keys = norm(keys + attn(p + ".cross_attn_image_to_token", keys + key_pe, queries + query_pe, queries), p + ".norm4")
    p = "modulate_transformer.final_attn_token_to_image"
    queries = norm(queries + attn(p, queries + query_pe, keys + key_pe, keys), "modulate_transformer.norm_final_attn")
    grid = F.interpolate(keys.transpose(1, 2).reshape(b, D, side, side), size=(latent, latent), mode="bilinear")
    spatial = F.conv2d(grid, w["dimension_reduction_head_zeroconv.weight"], w["dimension_reduction_head_zeroconv.bias"])
    return lin(queries, "dimension_reduction_head_qformer_out"), spatial


def reference_qformer(w: dict, states: torch.Tensor, heads: int = TINY_ARCH["qformer_heads"]) -> torch.Tensor:
    """BLIP-2's query-only BERT (LAVIS ``Qformer.py`` semantics) from the official key names:
    LayerNorm(queries); per layer self-attention, cross-attention to ``states`` every 2nd layer, and
    the query feed-forward, each with a residual and post-LayerNorm."""
    h = TINY_CROSS_DIM

    def lin(x, p):
        return F.linear(x, w[p + ".weight"], w[p + ".bias"])

    def ln(x, p):
        return F.layer_norm(x, (h,), w[p + ".weight"], w[p + ".bias"], eps=1e-12)

    def attention(p, x, kv):
        q, k, v = lin(x, p + ".self.query"), lin(kv, p + ".self.key"), lin(kv, p + ".self.value")
        b = x.shape[0]
        split = lambda t: t.reshape(b, -1, heads, h // heads).transpose(1, 2)  # noqa: E731
        a = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(h // heads), dim=-1) @ split(v)
        return ln(lin(a.transpose(1, 2).reshape(b, -1, h), p + ".output.dense") + x, p + ".output.LayerNorm")

    x = ln(w["sd_query_tokens"].expand(states.shape[0], -1, -1), "sd_qformer.embeddings.LayerNorm")
    for i in range(TINY_ARCH["qformer_layers"]):
        p = f"sd_qformer.encoder.layer.{i}"
        x = attention(p + ".attention", x, x)
        if i % 2 == 0:
            x = attention(p + ".crossattention", x, states)
        ff = lin(F.gelu(lin(x, p + ".intermediate_query.dense")), p + ".output_query.dense")
        x = ln(ff + x, p + ".output_query.LayerNorm")
    return x


@pytest.fixture
def release(tmp_path, tiny_base):
    """A tiny release folder in the official layout (step 15000), 35 new token rows."""
    from trainer.models.llava import load_tokenizer
    from trainer.tiny import tiny_unet

    g = torch.Generator().manual_seed(0)
    root = tmp_path / "SmartEdit-tiny"
    base = len(load_tokenizer(tiny_base["llava"]))
    rows = base + 35
    (root / "embeddings_qformer").mkdir(parents=True)
    embeds = {**official_qformer(g), "lm_head.weight": torch.randn(rows, TINY_LLM_HIDDEN, generator=g),
              "mm_projector.weight": torch.randn(TINY_LLM_HIDDEN, TINY_VISION_HIDDEN, generator=g),
              "mm_projector.bias": torch.randn(TINY_LLM_HIDDEN, generator=g) * 0.1}
    torch.save(embeds, root / "embeddings_qformer" / "checkpoint-15000_embeddings_qformer.bin")
    llm = {"model.base_model.model.embed_tokens.weight": torch.randn(rows, TINY_LLM_HIDDEN, generator=g)}
    for i in range(2):
        for proj in ("q_proj", "v_proj"):
            llm[f"model.base_model.model.layers.{i}.self_attn.{proj}.lora_A.weight"] = torch.randn(8, TINY_LLM_HIDDEN, generator=g)
            llm[f"model.base_model.model.layers.{i}.self_attn.{proj}.lora_B.weight"] = torch.randn(TINY_LLM_HIDDEN, 8, generator=g)
    (root / "LLM-15000").mkdir()
    torch.save(llm, root / "LLM-15000" / "adapter_model.bin")
    (root / "modulate-15000").mkdir()
    bim = official_bim(g)
    torch.save(bim, root / "modulate-15000" / "adapter_model.bin")
    (root / "unet-15000").mkdir()
    torch.manual_seed(3)
    unet = {f"unet.{k}": v for k, v in tiny_unet(8).state_dict().items()}
    torch.save(unet, root / "unet-15000" / "adapter_model.bin")
    return {"root": root, "embeds": embeds, "llm": llm, "bim": bim, "unet": unet, "base_rows": base}


def _argv(release, tiny_base, out):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_ARCH.items()]
    return ["--official", str(release["root"]), "--llava", tiny_base["llava"], "--sd", tiny_base["sd"],
            "-o", str(out), "--resolution", "64", "--max-length", "320", *flags]


def test_converted_release_loads_and_matches_the_official_modules(release, tiny_base, tmp_path):
    from trainer.convert_official import main
    from trainer.models.build import build_model, read_checkpoint_config

    ckpt = main(_argv(release, tiny_base, tmp_path / "converted"))
    model, tok = build_model(read_checkpoint_config(ckpt), ckpt=ckpt)
    model.eval()
    # BIM: same outputs as SAM's two-way transformer run on the official weights.
    g = torch.Generator().manual_seed(1)
    text, vision = torch.randn(2, 77, TINY_CROSS_DIM, generator=g), torch.randn(2, 16, TINY_VISION_HIDDEN, generator=g)
    with torch.no_grad():
        delta, spatial = model.bim(text, vision, (8, 8))
        ref_delta, ref_spatial = reference_bim(release["bim"], text, vision, 8)
    torch.testing.assert_close(delta, ref_delta, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(spatial, ref_spatial, atol=1e-5, rtol=1e-5)
    # Token rows: <img> from row base+0, <img_i> from row base+3+i (after <im_start>, <im_end>).
    emb = model.llm.llava.get_input_embeddings()
    ids = tok.convert_tokens_to_ids(["<img>", "<img_0>", "<img_31>"])
    got = emb(torch.tensor(ids))
    full = release["llm"]["model.base_model.model.embed_tokens.weight"]
    base = release["base_rows"]
    torch.testing.assert_close(got, full[[base, base + 3, base + 34]])
    head = model.llm.llava.get_output_embeddings()
    hidden = torch.randn(1, TINY_LLM_HIDDEN)
    logits = head(hidden)[0, ids]
    torch.testing.assert_close(logits, hidden[0] @ release["embeds"]["lm_head.weight"][[base, base + 3, base + 34]].T)
    # QFormer: same outputs as BLIP-2's query-only BERT run on the official weights.
    states = torch.randn(2, 32, TINY_LLM_HIDDEN, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(model.qformer(states), reference_qformer(release["embeds"], states), atol=1e-5, rtol=1e-5)
    # LoRA and UNet landed where they belong.
    lora_b = dict(model.llm.peft.named_parameters())[
        "base_model.model.model.language_model.layers.1.self_attn.v_proj.lora_B.default.weight"]
    torch.testing.assert_close(lora_b, release["llm"]["model.base_model.model.layers.1.self_attn.v_proj.lora_B.weight"])
    torch.testing.assert_close(model.unet.conv_in.weight, release["unet"]["unet.conv_in.weight"])


def test_release_without_bim_converts_to_stage_2a_and_unknown_keys_are_refused(release, tiny_base, tmp_path):
    import shutil

    from trainer.convert_official import main
    from trainer.models.build import read_checkpoint_config

    shutil.rmtree(release["root"] / "modulate-15000")
    ckpt = main(_argv(release, tiny_base, tmp_path / "mllmsd"))
    assert read_checkpoint_config(ckpt).use_bim is False and not (ckpt / "bim.safetensors").exists()
    llm = dict(release["llm"], **{"model.base_model.model.norm.weight": torch.ones(TINY_LLM_HIDDEN)})
    torch.save(llm, release["root"] / "LLM-15000" / "adapter_model.bin")
    with pytest.raises(SystemExit, match="model.base_model.model.norm.weight is neither LoRA nor the embedding"):
        main(_argv(release, tiny_base, tmp_path / "bad"))
