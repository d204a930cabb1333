"""Model parts with tiny random-init LLaVA / UNet / VAE / QFormer / BIM."""
from __future__ import annotations

import torch

from trainer import IMAGE_TOKENS


def test_forward_produces_both_losses_and_gradients(tiny_cfg, dataset, make_batch):
    from trainer.models.build import build_model

    torch.manual_seed(0)
    model, tok = build_model(tiny_cfg)
    batch = make_batch(model, tok, dataset)
    out = model(batch)
    assert out["lm_loss"] > 0 and out["diffusion_loss"] > 0
    assert torch.isclose(out["loss"], out["lm_loss"] + out["diffusion_loss"])
    out["loss"].backward()
    named = dict(model.trainable_parameters())
    for part in ("qformer.queries", "bim.text_out.weight", "bim.image_out.weight", "unet.conv_in.weight"):
        assert named[part].grad is not None and named[part].grad.abs().sum() > 0, part
    lora = [p for n, p in named.items() if "lora_B" in n]
    assert lora and all(p.grad is not None for p in lora)


def test_vqa_only_batch_has_zero_diffusion_loss(tiny_cfg, dataset, make_batch):
    from trainer.models.build import build_model

    model, tok = build_model(tiny_cfg)
    out = model(make_batch(model, tok, dataset, n_edit=0, vqa=True))
    assert out["diffusion_loss"] == 0 and out["lm_loss"] > 0


def test_lora_targets_exclude_vision_tower_and_only_new_rows_train(tiny_cfg):
    from trainer.models.build import build_model

    model, tok = build_model(tiny_cfg)
    names = [n for n, _ in model.trainable_parameters()]
    lora = [n for n in names if "lora_" in n]
    assert lora and all(".language_model." in n for n in lora)
    assert all(("q_proj" in n) or ("v_proj" in n) for n in lora)
    assert not any("vision_tower" in n or "multi_modal_projector" in n for n in names)
    llava = model.llm.llava
    assert not any(p.requires_grad for p in llava.model.vision_tower.parameters())
    assert not any(p.requires_grad for p in llava.model.multi_modal_projector.parameters())
    deltas = [n for n in names if "trainable_tokens_delta" in n]
    assert len(deltas) == 2 and {"embed_tokens", "lm_head"} <= {d.split(".")[-4] for d in deltas}
    assert all(dict(model.trainable_parameters())[d].shape[0] == 33 for d in deltas)


def test_zero_init_paths_leave_the_unet_output_unchanged(tiny_cfg, tiny_base):
    """8-channel conv_in + BIM's zero-init heads == the plain 4-channel UNet at initialisation."""
    from trainer.models.build import build_model
    from trainer.models.unet import denoise, load_unet

    torch.manual_seed(0)
    model, _ = build_model(tiny_cfg)
    plain = load_unet(tiny_base["sd"] + "/unet").eval()
    model.eval()
    b, hw = 2, (8, 8)
    noisy, source = torch.randn(b, 4, *hw), torch.randn(b, 4, *hw)
    text = torch.randn(b, 77, 32)
    vision = torch.randn(b, model.llm.n_patches(), model.llm.vision_hidden_size)
    delta, spatial = model.bim(text, vision, hw)
    context = text + 0.5 * delta
    assert spatial.abs().sum() == 0 and delta.abs().sum() == 0
    t = torch.tensor([10, 500])
    with torch.no_grad():
        ours = denoise(model.unet, torch.cat([noisy, source], 1), t, context, spatial)
        ref = plain(noisy, t, encoder_hidden_states=text).sample
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    # ...and the residual really is applied once it is non-zero:
    with torch.no_grad():
        moved = denoise(model.unet, torch.cat([noisy, source], 1), t, context, torch.ones_like(spatial))
    assert not torch.allclose(moved, ref)


def test_checkpoint_roundtrip_and_saved_tokenizer(tiny_cfg, tmp_path):
    from transformers import AutoTokenizer

    from trainer.models.build import build_model, read_checkpoint_config, save_model

    torch.manual_seed(0)
    model, tok = build_model(tiny_cfg)
    with torch.no_grad():  # make every trainable part non-trivial so the round trip is meaningful
        for _, p in model.trainable_parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_model(model, tok, tiny_cfg, tmp_path)
    saved = AutoTokenizer.from_pretrained(str(tmp_path / "tokenizer"), local_files_only=True)
    ids = saved.convert_tokens_to_ids(list(IMAGE_TOKENS))
    assert len(set(ids)) == 32 and all(len(saved(t, add_special_tokens=False)["input_ids"]) == 1 for t in IMAGE_TOKENS)
    assert ids == tok.convert_tokens_to_ids(list(IMAGE_TOKENS))
    again, _ = build_model(read_checkpoint_config(tmp_path), ckpt=tmp_path)
    a, b = dict(model.named_parameters()), dict(again.named_parameters())
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    torch.testing.assert_close(model.null_text, again.null_text)


def test_bim_shapes_and_two_way_outputs():
    from trainer.models.bim import build_bim

    bim = build_bim(text_dim=32, vision_dim=24, cross_dim=32, unet_channels=16, dim=32, heads=2, mlp=64)
    torch.nn.init.normal_(bim.text_out.weight)
    torch.nn.init.normal_(bim.image_out.weight)
    delta, spatial = bim(torch.randn(3, 77, 32), torch.randn(3, 36, 24), (12, 10))
    assert delta.shape == (3, 77, 32) and spatial.shape == (3, 16, 12, 10)


def _condition(model, batch, latent_hw=(8, 8)):
    """(vision features, LLM hidden states, context, spatial) of a batch, through the model."""
    with torch.no_grad():
        vision = model.llm.vision_features(batch["vit_pixels"])
        hidden, _, _ = model.llm(batch["input_ids"], batch["attention_mask"], vision)
        context, spatial = model.condition(hidden, batch["input_ids"], vision, latent_hw)
    return vision, hidden, context, spatial


def _tiny_model_with_live_bim(tiny_cfg):
    """The tiny model (seed 0) in eval mode, its BIM heads given random weights (see ``_nonzero_bim``)."""
    from trainer.models.build import build_model

    torch.manual_seed(0)
    model, tok = build_model(tiny_cfg)
    _nonzero_bim(model)
    return model.eval(), tok


def _nonzero_bim(model, seed: int = 1):
    """Give the BIM's zero-init output heads random weights so its outputs carry values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (model.bim.text_out.weight, model.bim.image_out.weight):
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_context_is_qformer_plus_half_bim_delta_through_the_model(tiny_cfg, dataset, make_batch):
    """``SmartEdit.condition`` itself (not a sum computed here) adds 0.5 x the BIM's f' to the QFormer output."""
    model, tok = _tiny_model_with_live_bim(tiny_cfg)
    batch = make_batch(model, tok, dataset, n_edit=2, vqa=False)
    vision, hidden, context, spatial = _condition(model, batch)
    with torch.no_grad():
        text = model.qformer(model.llm.image_token_states(hidden, batch["input_ids"]))
        delta, spatial_ref = model.bim(text, vision, (8, 8))
    assert delta.abs().mean() > 1e-3 and spatial.abs().mean() > 1e-3
    torch.testing.assert_close(context - text, 0.5 * delta, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(spatial, spatial_ref)


def test_bim_outputs_depend_on_both_inputs_and_are_pinned():
    """Values, not shapes: f' depends on the image and v' on the text (the two-way part), and one
    output slice is pinned so a change of attention or upsampling is noticed."""
    from trainer.models.bim import build_bim

    torch.manual_seed(0)
    bim = build_bim(text_dim=32, vision_dim=24, cross_dim=32, unet_channels=16, dim=32, heads=2, mlp=64)
    torch.nn.init.normal_(bim.text_out.weight)
    torch.nn.init.normal_(bim.image_out.weight)
    text, vision = torch.randn(2, 77, 32), torch.randn(2, 36, 24)
    with torch.no_grad():
        delta, spatial = bim(text, vision, (12, 12))
        delta_v, spatial_v = bim(text, vision.flip(1), (12, 12))  # same patches, other places
        delta_t, spatial_t = bim(text * 2, vision, (12, 12))
    assert (delta - delta_v).abs().max() > 1e-3  # text reads the image (and its positions)
    assert (spatial - spatial_t).abs().max() > 1e-3  # the image reads the text
    expected_delta = torch.tensor(PINNED_BIM_DELTA)
    expected_spatial = torch.tensor(PINNED_BIM_SPATIAL)
    torch.testing.assert_close(delta[0, 0, :4], expected_delta, atol=1e-3, rtol=0)
    torch.testing.assert_close(spatial[0, 0, 0, :4], expected_spatial, atol=1e-3, rtol=0)


def test_dropout_flags_are_text_first_then_image():
    """r < 2p nulls the text, p <= r < 3p zeroes the image: the two are told apart by r, not by rate."""
    from trainer.features import draw_dropout

    assert draw_dropout(0.02) == (True, False)
    assert draw_dropout(0.07) == (True, True)
    assert draw_dropout(0.12) == (False, True)
    assert draw_dropout(0.20) == (False, False)


def test_dropout_nulls_the_text_and_zeroes_the_source_latent_in_the_unet_input(tiny_cfg, dataset, make_batch):
    from trainer.models.build import build_model

    torch.manual_seed(0)
    model, tok = build_model(tiny_cfg)
    batch = make_batch(model, tok, dataset, n_edit=2, vqa=False)
    batch["drop_text"] = torch.tensor([True, False])
    batch["drop_image"] = torch.tensor([False, True])
    seen = {}

    def grab(_module, args, kwargs):
        seen["latents"], seen["context"] = args[0].detach(), kwargs["encoder_hidden_states"].detach()

    handle = model.unet.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            model(batch)
    finally:
        handle.remove()
    source = seen["latents"][:, 4:]
    assert source[0].abs().sum() > 0 and source[1].abs().sum() == 0  # image dropout: zero source latent
    torch.testing.assert_close(seen["context"][0], model.null_text)  # text dropout: the null-text embedding
    assert not torch.allclose(seen["context"][1], model.null_text)


def test_tiny_smartedit_forward_output_slice_is_pinned(tiny_cfg, dataset, make_batch):
    """diffusers-style expected slice: the tiny model's UNet prediction on fixed inputs (CPU, atol 1e-3)."""
    from trainer.models.unet import denoise

    model, tok = _tiny_model_with_live_bim(tiny_cfg)
    batch = make_batch(model, tok, dataset, n_edit=1, vqa=False)
    _, _, context, spatial = _condition(model, batch)
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        latents = torch.randn(1, 8, 8, 8, generator=g)
        pred = denoise(model.unet, latents, torch.tensor([500]), context, spatial)
    torch.testing.assert_close(pred[0, 0, 0, :4], torch.tensor(PINNED_FORWARD), atol=1e-3, rtol=0)


# Recorded on CPU with torch 2.13 / diffusers 0.42.1 / transformers 5.23 (tiny random-init models).
PINNED_BIM_DELTA = [4.1238, -1.4232, 1.7492, -3.4880]
PINNED_BIM_SPATIAL = [1.0225, 0.5878, -0.2818, 1.1376]
PINNED_FORWARD = [0.2668, -0.2212, -0.1257, 0.2836]
