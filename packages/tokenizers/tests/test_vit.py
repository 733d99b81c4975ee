"""The BEiT-v2 style ViT of VQ-KD: shapes, position-embedding resizing, attention, init."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vq.tokenizers.vit import ViT, ViTConfig, unpatchify
from vq.tokenizers.vit.vit import Attention


def tiny(**overrides) -> ViT:
    torch.manual_seed(0)
    return ViT(ViTConfig.preset("tiny", **overrides))


def bicubic_matrix(n_in: int, n_out: int, a: float = -0.75) -> np.ndarray:
    """(n_out, n_in) weights of 1-D cubic-convolution resizing (Keys, a=-0.75), half-pixel
    centres, edge samples repeated: the textbook definition, written from scratch."""

    def kernel(t: float) -> float:
        t = abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        if t < 2:
            return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
        return 0.0

    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        x = (i + 0.5) * n_in / n_out - 0.5
        left = math.floor(x)
        for k in range(left - 1, left + 3):
            weights[i, min(max(k, 0), n_in - 1)] += kernel(x - k)
    return weights


def test_encoder_maps_images_to_a_feature_grid() -> None:
    model = tiny()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 8, 4, 4)
    assert model(torch.randn(2, 3, 48, 40)).shape == (2, 8, 6, 5)  # other grids work
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(torch.randn(1, 3, 30, 32))


def test_position_embedding_is_the_parameter_itself_at_the_native_grid() -> None:
    model = tiny()
    assert model.position_embedding(4, 4) is model.pos_embed


def test_position_embedding_is_resized_bicubically() -> None:
    model = tiny()
    with torch.no_grad():
        resized = model.position_embedding(8, 6)  # (1, 1 + 48, C)
    assert resized.shape == (1, 1 + 8 * 6, 32)
    assert torch.equal(resized[:, 0], model.pos_embed[:, 0])  # cls entry untouched
    grid = model.pos_embed[0, 1:].detach().double().numpy().reshape(4, 4, 32)  # (h, w, C)
    expected = np.einsum("ih,jw,hwc->ijc", bicubic_matrix(4, 8), bicubic_matrix(4, 6), grid)
    np.testing.assert_allclose(resized[0, 1:].numpy(), expected.reshape(48, 32), atol=1e-6)


def test_vqkd_encoder_gives_16x16_tokens_at_256_px() -> None:
    with torch.device("meta"):
        model = ViT(ViTConfig.preset("vqkd_encoder"))
        features = model(torch.empty(1, 3, 256, 256))
        assert model.position_embedding(16, 16).shape == (1, 1 + 256, 768)
    assert features.shape == (1, 32, 16, 16)
    assert model(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 32, 14, 14)


def test_resized_position_embedding_is_cached_until_the_parameter_changes() -> None:
    model = tiny()
    with torch.no_grad():
        first = model.position_embedding(8, 8)
        assert model.position_embedding(8, 8) is first
        model.pos_embed.add_(1.0)  # what an optimizer step does
        second = model.position_embedding(8, 8)
    assert second is not first
    torch.testing.assert_close(second, first + 1.0)  # bicubic weights sum to one


def test_gradient_reaches_pos_embed_through_the_resize_on_every_step() -> None:
    model = tiny()
    x = torch.randn(2, 3, 64, 64)  # 8x8 grid, not the native 4x4
    for _ in range(2):  # a cached graph would fail on the second backward
        model.zero_grad()
        model(x).square().mean().backward()
        assert model.pos_embed.grad is not None
        assert model.pos_embed.grad[0, 1:].abs().sum() > 0


def test_attention_matches_a_by_hand_computation_with_q_and_v_biases_only() -> None:
    torch.manual_seed(0)
    attention = Attention(dim=16, num_heads=2)
    with torch.no_grad():
        attention.q_bias.normal_()
        attention.v_bias.normal_()
    assert attention.qkv.bias is None
    x = torch.randn(3, 5, 16)
    wq, wk, wv = attention.qkv.weight.chunk(3)
    q = x @ wq.T + attention.q_bias
    k = x @ wk.T
    v = x @ wv.T + attention.v_bias
    heads = []
    for h in range(2):
        s = slice(8 * h, 8 * (h + 1))
        weights = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(8), dim=-1)
        heads.append(weights @ v[..., s])
    expected = attention.proj(torch.cat(heads, dim=-1))
    torch.testing.assert_close(attention(x), expected, atol=1e-5, rtol=1e-5)


def test_init_scales_residual_outputs_by_depth() -> None:
    model = tiny(embed_dim=64, depth=4, num_heads=2)
    assert model.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.pos_embed.std().item() == pytest.approx(0.02, rel=0.1)
    for layer_id, block in enumerate(model.blocks, start=1):
        expected = 0.02 / math.sqrt(2 * layer_id)
        assert block.attn.proj.weight.std().item() == pytest.approx(expected, rel=0.1)
        assert block.mlp.fc2.weight.std().item() == pytest.approx(expected, rel=0.1)
        assert block.mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.1)
        assert torch.all(block.norm1.weight == 1) and torch.all(block.norm1.bias == 0)
        assert torch.all(block.mlp.fc1.bias == 0) and torch.all(block.attn.q_bias == 0)


def test_vqkd_encoder_has_the_vit_b16_parameter_count() -> None:
    with torch.device("meta"):
        model = ViT(ViTConfig.preset("vqkd_encoder"))
    d, depth, patch, tokens, out = 768, 12, 16, 1 + 14 * 14, 32
    per_block = (
        2 * 2 * d  # two LayerNorms
        + d * 3 * d  # qkv weight (no bias)
        + 2 * d  # q_bias, v_bias
        + d * d + d  # proj
        + d * 4 * d + 4 * d  # fc1
        + 4 * d * d + d  # fc2
    )  # fmt: skip
    expected = (
        3 * patch * patch * d + d  # patch embedding
        + d + tokens * d  # cls token, position embeddings
        + depth * per_block
        + 2 * d  # fc_norm
        + d * d + d + d * out + out  # task layer
    )  # fmt: skip
    count = sum(p.numel() for p in model.parameters())
    assert count == expected
    assert 85e6 < count < 87e6  # ViT-B/16 is about 86M


def test_decoder_reads_the_code_grid_cell_by_cell() -> None:
    decoder = ViT(ViTConfig.preset("tiny", patch_size=1, in_chans=8, out_dim=16, depth=1))
    assert decoder(torch.randn(2, 8, 4, 4)).shape == (2, 16, 4, 4)
    assert decoder(torch.randn(2, 8, 6, 6)).shape == (2, 16, 6, 6)
    with torch.device("meta"):
        vqkd = ViT(ViTConfig.preset("vqkd_decoder"))
        assert vqkd(torch.empty(1, 32, 14, 14)).shape == (1, 512, 14, 14)


def test_pixel_decoders_emit_one_patch_per_token() -> None:
    decoder = ViT(
        ViTConfig.preset("tiny", patch_size=1, in_chans=8, out_dim=3, out_patch_size=4, depth=1)
    )
    assert decoder(torch.randn(2, 8, 4, 4)).shape == (2, 3, 16, 16)
    with torch.device("meta"):
        for name, width in (("vqkd", 768), ("vqkd_large", 1280)):
            pixel_decoder = ViT(ViTConfig.preset(name))
            assert pixel_decoder.pos_embed.shape[-1] == width
            assert pixel_decoder(torch.empty(1, 32, 16, 16)).shape == (1, 3, 256, 256)


def test_unpatchify_places_each_patch_at_its_token() -> None:
    batch, height, width, patch, channels = 2, 3, 2, 4, 3
    tokens = torch.randn(batch, height * width, patch * patch * channels)
    image = unpatchify(tokens, height, patch)
    assert image.shape == (batch, channels, height * patch, width * patch)
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                for p in range(patch):
                    for q in range(patch):
                        for c in range(channels):
                            value = tokens[b, i * width + j, (p * patch + q) * channels + c]
                            assert image[b, c, i * patch + p, j * patch + q] == value


def test_tiny_encoder_learns_a_fixed_target() -> None:
    model = tiny()
    x, target = torch.randn(4, 3, 32, 32), torch.randn(4, 8, 4, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = F.mse_loss(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
