"""VQGAN encoder/decoder: reference sizes, token grids, attention equivalence, resampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from vq.tokenizers.autoencoders import (
    VQGANDecoder,
    VQGANDecoderConfig,
    VQGANEncoder,
    VQGANEncoderConfig,
)
from vq.tokenizers.autoencoders.vqgan import AttentionBlock, Downsample, Upsample


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and lose a lot on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_on_meta(module_cls, config):
    """Build without allocating or initialising weights: enough to count parameters."""
    with torch.device("meta"):
        return module_cls(config)


@pytest.mark.parametrize(
    ("module_cls", "config_cls", "reference"),
    [(VQGANEncoder, VQGANEncoderConfig, 29.30e6), (VQGANDecoder, VQGANDecoderConfig, 42.45e6)],
)
def test_f16_parameter_counts_match_reference(module_cls, config_cls, reference):
    count = n_params(build_on_meta(module_cls, config_cls.preset("f16")))
    assert abs(count - reference) / reference < 0.01
    # The defaults are the f16 model.
    assert count == n_params(build_on_meta(module_cls, config_cls()))


def test_f8_has_one_level_less():
    enc = build_on_meta(VQGANEncoder, VQGANEncoderConfig.preset("f8"))
    dec = build_on_meta(VQGANDecoder, VQGANDecoderConfig.preset("f8"))
    assert len(enc.levels) == len(dec.levels) == 4
    assert enc.downsample_factor == dec.upsample_factor == 8
    assert n_params(enc) < n_params(build_on_meta(VQGANEncoder, VQGANEncoderConfig.preset("f16")))


def narrow(preset: str):
    """The level structure of ``preset`` at a width small enough for CPU tests."""
    small = {"width": 8, "depth": 1, "norm_groups": 4}
    return (
        VQGANEncoderConfig.preset(preset, **small, out_channels=16),
        VQGANDecoderConfig.preset(preset, **small, in_channels=16),
    )


@pytest.mark.parametrize(("preset", "grid"), [("f16", 16), ("f8", 32)])
def test_256px_image_gives_reference_token_grid(preset, grid):
    enc_cfg, dec_cfg = narrow(preset)
    encoder, decoder = VQGANEncoder(enc_cfg), VQGANDecoder(dec_cfg)
    image = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        z = encoder(image)
        assert z.shape == (1, 16, grid, grid)
        assert decoder(z).shape == image.shape


@pytest.mark.slow
def test_full_size_f16_encoder_forward_at_32px():
    encoder = VQGANEncoder(VQGANEncoderConfig.preset("f16")).eval()
    with torch.no_grad():
        z = encoder(torch.randn(1, 3, 32, 32))
    assert z.shape == (1, 256, 2, 2)
    assert torch.isfinite(z).all()


def test_attention_placement_and_no_attention_option():
    enc_cfg, dec_cfg = narrow("f16")
    encoder, decoder = VQGANEncoder(enc_cfg), VQGANDecoder(dec_cfg)
    # Attention after every block of the lowest-resolution level, plus the mid block.
    assert [len(level.attentions) for level in encoder.levels] == [0, 0, 0, 0, 1]
    assert [len(level.attentions) for level in decoder.levels] == [1, 0, 0, 0, 0]
    assert encoder.mid is not None and decoder.mid is not None

    plain = {"attention": False, "mid_block": False}
    encoder = VQGANEncoder(enc_cfg.model_copy(update=plain))
    decoder = VQGANDecoder(dec_cfg.model_copy(update=plain))
    for module in (encoder, decoder):
        assert not any(isinstance(m, AttentionBlock) for m in module.modules())
    assert decoder(encoder(torch.randn(1, 3, 32, 32))).shape == (1, 3, 32, 32)


def test_attention_block_equals_groupnorm_plus_multihead_attention():
    torch.manual_seed(0)
    block = AttentionBlock(channels=16, norm_groups=4)
    nn.init.normal_(block.in_proj_bias)
    nn.init.normal_(block.out_proj.bias)
    reference = nn.MultiheadAttention(16, 1, batch_first=True)
    # Same parameter names: an nn.MultiheadAttention state dict loads as it is.
    reference.load_state_dict(
        {k: v for k, v in block.state_dict().items() if not k.startswith("norm.")}
    )
    x = torch.randn(2, 16, 3, 5)
    tokens = block.norm(x).flatten(2).transpose(1, 2)  # (B, 15, 16)
    attended, _ = reference(tokens, tokens, tokens, need_weights=False)
    expected = x + attended.transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(block(x), expected)


def test_downsample_pads_right_and_bottom_only():
    down = Downsample(1)
    nn.init.zeros_(down.conv.bias)
    x = torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    with torch.no_grad():
        down.conv.weight.zero_()
        down.conv.weight[0, 0, 0, 0] = 1.0  # top-left tap: reads x[2i, 2j]
        torch.testing.assert_close(down(x), x[..., ::2, ::2])
        down.conv.weight.zero_()
        down.conv.weight[0, 0, 2, 2] = 1.0  # bottom-right tap: the zero pad at the end
        expected = torch.tensor([[x[0, 0, 2, 2], 0.0], [0.0, 0.0]])
        torch.testing.assert_close(down(x)[0, 0], expected)


def test_upsample_is_nearest_then_conv_and_keeps_dtype_under_autocast():
    up = Upsample(2)
    x = torch.randn(1, 2, 3, 3)
    expected = up.conv(x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
    torch.testing.assert_close(up(x), expected)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert up(x.bfloat16()).dtype == torch.bfloat16


def test_decoder_last_layer_weight_is_the_output_conv_and_gets_gradients():
    _, dec_cfg = narrow("f8")
    decoder = VQGANDecoder(dec_cfg)
    assert decoder.last_layer_weight is decoder.out_conv.weight
    decoder(torch.randn(1, 16, 2, 2)).square().mean().backward()
    assert decoder.last_layer_weight.grad is not None
    assert decoder.last_layer_weight.grad.abs().sum() > 0


def test_encoder_decoder_train_on_one_image():
    """A reconstruction loss that falls: the blocks are wired so gradients reach everything."""
    torch.manual_seed(0)
    enc_cfg = VQGANEncoderConfig.preset("tiny")
    dec_cfg = VQGANDecoderConfig.preset("tiny")
    encoder, decoder = VQGANEncoder(enc_cfg), VQGANDecoder(dec_cfg)
    params = [*encoder.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=2e-3)
    # Smooth images (bilinear from 4x4): structure to learn beyond the mean colour.
    image = F.interpolate(torch.rand(2, 3, 4, 4) * 2 - 1, size=16, mode="bilinear")
    losses = []
    for _ in range(20):
        loss = F.mse_loss(decoder(encoder(image)), image)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is not None for p in params)


def test_norm_groups_must_divide_every_width():
    with pytest.raises(ValidationError, match="norm_groups=32 does not divide the width 16"):
        VQGANEncoderConfig(width=16)
    with pytest.raises(ValueError, match="unknown VQGAN preset"):
        VQGANEncoderConfig.preset("f32")
