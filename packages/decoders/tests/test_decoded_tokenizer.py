"""DecodedTokenizer: a frozen VQ-KD / Cluster tokenizer plus a trainable pixel decoder."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import torch
from safetensors.torch import save_file

from vq.core.errors import UserError
from vq.core.tensorfiles import load_weights
from vq.decoders import DecodedTokenizer, DecodedTokenizerConfig, pixel_decoder_preset
from vq.tokenizers.autoencoders.vqgan import VQGANDecoderConfig
from vq.tokenizers.connectors import ConnectorConfig
from vq.tokenizers.models.cluster import ClusterConfig
from vq.tokenizers.models.vqkd import VQKDConfig, VQKDTokenizer
from vq.tokenizers.quantizers import VectorQuantizerConfig
from vq.tokenizers.teachers import TeacherConfig
from vq.tokenizers.vit import ViTConfig

CODE_DIM = 8
NUM_CODES = 16


def tiny_vqkd() -> VQKDConfig:
    """32 px -> 4x4 tokens of 8 dims, 16 codes; a feature decoder to 12-d 'teacher' features."""
    encoder = ViTConfig.preset("tiny")
    return VQKDConfig(
        encoder=encoder,
        quantizer=VectorQuantizerConfig.preset("vqkd", NUM_CODES, CODE_DIM),
        decoder=ViTConfig(
            grid_size=4,
            patch_size=1,
            in_chans=CODE_DIM,
            embed_dim=16,
            depth=1,
            num_heads=2,
            out_dim=12,
        ),
    )


def conv_decoder(tokenizer: VQKDConfig | ClusterConfig) -> DecodedTokenizerConfig:
    """1x1 conv to 16 channels, then a VQGAN decoder upsampling by 8."""
    return DecodedTokenizerConfig(
        tokenizer=tokenizer,
        pre_decode=ConnectorConfig(channels=(tokenizer.quantizer.dim, 16)),
        decoder=VQGANDecoderConfig(
            in_channels=16, width=8, width_mults=(2, 1, 1, 1), depth=1, norm_groups=4
        ),
    )


def vit_decoder(tokenizer: VQKDConfig, grid_size: int = 4) -> DecodedTokenizerConfig:
    return DecodedTokenizerConfig(
        tokenizer=tokenizer,
        pre_decode=ConnectorConfig(kind="identity", channels=(CODE_DIM,)),
        decoder=ViTConfig(
            grid_size=grid_size,
            patch_size=1,
            in_chans=CODE_DIM,
            embed_dim=16,
            depth=1,
            num_heads=2,
            out_dim=3,
            out_patch_size=8,
        ),
    )


@pytest.fixture(scope="module")
def trained_vqkd() -> VQKDTokenizer:
    """A VQ-KD whose codebook went through k-means and an EMA step (training forwards)."""
    torch.manual_seed(0)
    vqkd = VQKDTokenizer(tiny_vqkd())
    vqkd.train()
    for _ in range(2):
        vqkd(torch.rand(8, 3, 32, 32) * 2 - 1)
    return vqkd.eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


def decoded_from(vqkd: VQKDTokenizer, config: DecodedTokenizerConfig, tmp_path: Path):
    """A DecodedTokenizer loaded with ``vqkd``'s checkpoint file; and the load report."""
    file = tmp_path / "vqkd.safetensors"
    save_file({k: v.contiguous() for k, v in vqkd.state_dict().items()}, str(file))
    decoded = DecodedTokenizer(config)
    return decoded, load_weights(decoded, [file])


def test_a_vqkd_checkpoint_loads_as_it_is_beside_the_decoder(trained_vqkd, images, tmp_path):
    decoded, report = decoded_from(trained_vqkd, conv_decoder(tiny_vqkd()), tmp_path)

    assert decoded.frozen_prefixes == ("encoder", "quantizer", "decoder")
    assert report.unexpected == [] and report.mismatched == []
    assert sorted(report.loaded) == sorted(trained_vqkd.state_dict())
    assert {k.split(".")[0] for k in report.missing} == {"pre_decode", "pixel_decoder"}
    assert torch.equal(decoded.encode(images), trained_vqkd.encode(images))
    ids = decoded.encode(images)
    assert ids.shape == (3, 4, 4) and ids.dtype == torch.int64
    assert torch.equal(decoded.tokenizer.codes(ids), trained_vqkd.codes(ids))
    assert decoded.num_codes == NUM_CODES and decoded.grid_size(32) == (4, 4)


def test_forward_is_decode_of_encode_with_statistics_and_no_loss(trained_vqkd, images, tmp_path):
    decoded, _ = decoded_from(trained_vqkd, conv_decoder(tiny_vqkd()), tmp_path)
    out = decoded(images)

    assert out.reconstruction.shape == images.shape
    assert torch.equal(out.reconstruction, decoded.decode(decoded.encode(images)))
    assert torch.equal(out.indices, trained_vqkd.encode(images))
    assert out.quantizer.losses == {} and float(out.quantizer.loss()) == 0.0
    used = len(torch.unique(out.indices)) / NUM_CODES
    assert float(out.quantizer.statistics["codebook_usage"]) == pytest.approx(used)


def test_only_the_decoder_learns_and_the_tokenizer_never_changes(images):
    torch.manual_seed(0)
    decoded = DecodedTokenizer(conv_decoder(tiny_vqkd()))  # k-means init still pending
    before = {k: v.clone() for k, v in decoded.state_dict().items()}
    frozen = [k for k in before if k.split(".")[0] in decoded.frozen_prefixes]

    decoded.train()
    assert decoded.pixel_decoder.training
    assert not any(m.training for m in decoded.tokenizer.modules())
    trainable = set(decoded.trainable_parameters())
    for _ in range(2):
        decoded(images).reconstruction.square().mean().backward()
    for name, p in decoded.named_parameters():
        assert p.requires_grad == (p in trainable), name
        assert (p.grad is not None) == (p in trainable), name
    assert all(torch.equal(decoded.state_dict()[k], before[k]) for k in frozen)
    assert not bool(decoded.quantizer.initialized)  # no k-means ran


def test_vit_pixel_decoder_emits_a_patch_per_token_on_any_grid(images):
    decoded = DecodedTokenizer(vit_decoder(tiny_vqkd()))
    assert decoded.upsample_factor == 8
    assert decoded(images).reconstruction.shape == (3, 3, 32, 32)
    larger = torch.zeros(2, 3, 48, 48)  # 6x6 tokens: interpolated position embeddings
    assert decoded.decode(decoded.encode(larger)).shape == (2, 3, 48, 48)
    assert decoded.last_layer is decoded.pixel_decoder.task_layer[-1]


@pytest.mark.slow  # builds EfficientNet-Lite0 through timm
def test_cluster_keeps_only_its_codebook_in_the_state_dict(images):
    cluster = ClusterConfig(
        teacher=TeacherConfig(name="efficientnet_lite0", weights=None, image_size=64),
        quantizer=VectorQuantizerConfig.preset("cluster", NUM_CODES, 112),
    )
    decoded = DecodedTokenizer(conv_decoder(cluster))

    assert decoded.frozen_prefixes == ("teacher", "quantizer")
    assert {k.split(".")[0] for k in decoded.state_dict()} == {
        "quantizer",
        "pre_decode",
        "pixel_decoder",
    }
    assert decoded.encode(images).shape == (3, 4, 4)  # the teacher's grid at 64 px
    assert decoded.output_size(256) == (32, 32)  # whatever the input size
    with pytest.raises(UserError, match="reconstructions would be 32x32"):
        decoded.check_image_size(256)
    decoded.check_image_size(32)


def test_configs_check_the_channel_chain_and_round_trip():
    vqkd = tiny_vqkd()
    with pytest.raises(pydantic.ValidationError, match="codes have 8 channels"):
        DecodedTokenizerConfig(
            tokenizer=vqkd,
            pre_decode=ConnectorConfig(channels=(16, 16)),
            decoder=VQGANDecoderConfig(in_channels=16, width=8, norm_groups=4),
        )
    with pytest.raises(pydantic.ValidationError, match="pixel decoder reads 32"):
        DecodedTokenizerConfig(
            tokenizer=vqkd,
            pre_decode=ConnectorConfig(channels=(8, 16)),
            decoder=VQGANDecoderConfig(in_channels=32, width=8, norm_groups=4),
        )
    bad_vit = vit_decoder(vqkd).decoder.model_copy(update={"out_patch_size": 1})
    with pytest.raises(pydantic.ValidationError, match="out_patch_size > 1"):
        DecodedTokenizerConfig(
            tokenizer=vqkd, pre_decode=vit_decoder(vqkd).pre_decode, decoder=bad_vit
        )

    cluster = ClusterConfig(quantizer=VectorQuantizerConfig.preset("cluster", 64, 768))
    for config in (conv_decoder(vqkd), vit_decoder(vqkd), conv_decoder(cluster)):
        again = DecodedTokenizerConfig.model_validate(config.model_dump(mode="json"))
        assert again == config
        assert type(again.tokenizer) is type(config.tokenizer)
        assert type(again.decoder) is type(config.decoder)


def test_reference_presets():
    pre, conv = pixel_decoder_preset("vqgan", 32, 16)
    assert pre.channels == (32, 256) and conv.in_channels == 256 and conv.downsample_factor == 16
    pre, vit = pixel_decoder_preset("vqkd", 768, 16)
    assert pre.kind == "identity" and (vit.in_chans, vit.embed_dim, vit.depth) == (768, 768, 12)
    assert (vit.grid_size, vit.out_dim, vit.out_patch_size) == (16, 3, 16)
    _, large = pixel_decoder_preset("vqkd_large", 32, 16)
    assert (large.embed_dim, large.depth, large.num_heads) == (1280, 32, 16)
    config = DecodedTokenizerConfig.preset(VQKDConfig(), "vqkd")
    assert config.upsample_factor == 16 and config.code_dim == 32
