"""PixelTokenizer (encoder -> connector -> quantizer -> connector -> decoder) and connectors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from vq.core.errors import UserError
from vq.tokenizers.connectors import (
    ChainConnector,
    ConnectorConfig,
    ConvConnector,
    IdentityConnector,
    build_connector,
)
from vq.tokenizers.models import PixelTokenizer, PixelTokenizerConfig, TokenizerOutput
from vq.tokenizers.quantizers import FSQConfig, QuantizerOutput, VectorQuantizerConfig


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and lose a lot on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_vq(num_codes: int = 16, dim: int = 8) -> PixelTokenizer:
    torch.manual_seed(0)
    config = PixelTokenizerConfig.from_preset(
        "tiny", VectorQuantizerConfig(num_codes=num_codes, dim=dim)
    )
    return PixelTokenizer(config)


def images(n: int = 2, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_forward_shapes_and_outputs():
    tokenizer = tiny_vq()
    out = tokenizer(images())
    assert isinstance(out, TokenizerOutput)
    assert isinstance(out.quantizer, QuantizerOutput)
    assert out.reconstruction.shape == (2, 3, 16, 16)
    assert out.indices.shape == (2, 4, 4) and out.indices.dtype == torch.int64
    assert out.indices.min() >= 0 and out.indices.max() < tokenizer.num_codes
    assert out.quantizer.quantized.shape == (2, 8, 4, 4)
    assert set(out.quantizer.losses)  # a vector quantizer has codebook/commitment losses


def test_encode_and_decode_agree_with_forward():
    tokenizer = tiny_vq().eval()
    x = images()
    with torch.no_grad():
        out = tokenizer(x)
        tokens = tokenizer.encode(x)
        decoded = tokenizer.decode(tokens)
    assert torch.equal(tokens, out.indices)
    torch.testing.assert_close(decoded, out.reconstruction, rtol=1e-4, atol=1e-5)


def test_gradients_reach_the_encoder_through_the_quantizer():
    tokenizer = tiny_vq()
    x = images()
    out = tokenizer(x)
    (F.mse_loss(out.reconstruction, x) + out.quantizer.loss()).backward()
    for part in (tokenizer.encoder, tokenizer.post_encode, tokenizer.decoder):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0


@pytest.mark.parametrize(("preset", "grid"), [("f16", 16), ("f8", 32), ("tiny", 64)])
def test_grid_size_of_256px_images(preset, grid):
    config = PixelTokenizerConfig.from_preset(
        preset, VectorQuantizerConfig(num_codes=8, dim=4), width=8, depth=1, norm_groups=4
    )
    tokenizer = PixelTokenizer(config)
    assert tokenizer.downsample_factor == 256 // grid
    assert tokenizer.grid_size(256) == (grid, grid)
    assert tokenizer.grid_size((256, 128)) == (grid, grid // 2)


def test_image_size_not_a_multiple_of_the_factor_is_a_user_error():
    tokenizer = tiny_vq()
    with pytest.raises(UserError, match="not a multiple of the tokenizer's downsample factor 4"):
        tokenizer.grid_size(18)
    with pytest.raises(UserError, match="18x16"):
        tokenizer.encode(torch.zeros(1, 3, 18, 16))


def test_fsq_tokenizer_with_two_conv_connectors():
    config = PixelTokenizerConfig.from_preset(
        "tiny", FSQConfig(levels=[8, 5, 5]), connector_hidden=(32,)
    )
    assert config.post_encode.channels == (32, 32, 3)
    assert config.pre_decode.channels == (3, 32, 32)
    tokenizer = PixelTokenizer(config)
    assert isinstance(tokenizer.post_encode, ChainConnector)
    assert [c.conv.out_channels for c in tokenizer.post_encode] == [32, 3]
    out = tokenizer(images())
    assert out.indices.max() < 8 * 5 * 5
    assert out.quantizer.losses == {}
    assert tokenizer.decode(out.indices).shape == (2, 3, 16, 16)


def test_config_checks_that_parts_fit_and_round_trips():
    config = PixelTokenizerConfig.from_preset("tiny", VectorQuantizerConfig(num_codes=8, dim=4))
    assert PixelTokenizerConfig.model_validate_json(config.model_dump_json()) == config
    wrong = config.model_dump()
    wrong["post_encode"]["channels"] = (32, 5)
    with pytest.raises(ValidationError, match="post_encode out = 5 but quantizer dim = 4"):
        PixelTokenizerConfig.model_validate(wrong)
    wrong = config.model_dump()
    wrong["decoder"]["width_mults"] = (2, 1)
    with pytest.raises(ValidationError, match="downsamples by 4 but the decoder upsamples by 2"):
        PixelTokenizerConfig.model_validate(wrong)


def test_connectors():
    x = torch.randn(2, 6, 3, 3)
    identity = build_connector(ConnectorConfig(kind="identity", channels=(6,)))
    assert isinstance(identity, IdentityConnector) and identity(x) is x
    conv = build_connector(ConnectorConfig(channels=(6, 4)))
    assert isinstance(conv, ConvConnector)
    expected = torch.einsum("oc,bchw->bohw", conv.conv.weight[:, :, 0, 0], x)
    torch.testing.assert_close(conv(x), expected + conv.conv.bias.view(1, -1, 1, 1))
    chain = build_connector(ConnectorConfig(channels=(6, 5, 4)))
    assert (chain.in_channels, chain.out_channels) == (6, 4)
    torch.testing.assert_close(chain(x), chain[1](chain[0](x)))
    with pytest.raises(ValidationError, match="identity connector cannot change"):
        ConnectorConfig(kind="identity", channels=(6, 4))
    with pytest.raises(ValidationError, match="at least"):
        ConnectorConfig(channels=(6,))
