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
