"""A feature tokenizer with its pixel decoder through the downstream Tokenizer API."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from vq.core.errors import UserError
from vq.decoders import DecodedTokenizer, DecodedTokenizerConfig
from vq.decoders.api import Tokenizer
from vq.tokenizers.autoencoders.vqgan import VQGANDecoderConfig
from vq.tokenizers.connectors import ConnectorConfig
from vq.tokenizers.models.cluster import ClusterConfig
from vq.tokenizers.models.vqkd import VQKDConfig
from vq.tokenizers.quantizers import VectorQuantizerConfig
from vq.tokenizers.teachers import TeacherConfig
from vq.tokenizers.vit import ViTConfig


def tiny_vqkd(dim: int = 8) -> VQKDConfig:
    """32 px -> 4x4 tokens of ``dim`` dims, 16 codes."""
    return VQKDConfig(
        encoder=ViTConfig.preset("tiny", out_dim=dim),
        quantizer=VectorQuantizerConfig.preset("vqkd", 16, dim),
        decoder=ViTConfig.preset(
            "tiny", patch_size=1, in_chans=dim, depth=1, out_dim=12, grid_size=4
        ),
    )


def pair(tokenizer: VQKDConfig | ClusterConfig) -> DecodedTokenizer:
    """``tokenizer`` with a 1x1 conv and a VQGAN decoder upsampling by 8, random weights."""
    torch.manual_seed(0)
    config = DecodedTokenizerConfig(
        tokenizer=tokenizer,
        pre_decode=ConnectorConfig(channels=(tokenizer.quantizer.dim, 16)),
        decoder=VQGANDecoderConfig(
            in_channels=16, width=8, width_mults=(2, 1, 1, 1), depth=1, norm_groups=4
        ),
    )
    return DecodedTokenizer(config).eval()


def images(size: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (2, 3, size, size), generator=generator, dtype=torch.uint8)


def test_vqkd_pair_round_trips_without_its_feature_decoder(tmp_path):
    model = pair(tiny_vqkd())
    tokenizer = Tokenizer(model, omitted=("decoder",))
    assert tokenizer.kind.name == "decoded_tokenizer"
    assert (tokenizer.image_size, tokenizer.grid_size(), tokenizer.code_dim) == (32, (4, 4), 8)
    batch = images()
    ids = tokenizer.encode(batch)
    floats = batch.float() / 127.5 - 1
    assert torch.equal(ids, model.tokenizer.quantizer(model.tokenizer.encoder(floats)).indices)
    recon = tokenizer.decode(ids)
    assert recon.shape == (2, 3, 32, 32)
    torch.testing.assert_close(recon, model.decode(ids).clamp(-1, 1))

    tokenizer.save_pretrained(tmp_path)
    described = json.loads((tmp_path / "config.json").read_text())
    assert described["kind"] == "decoded_tokenizer" and described["omitted_parts"] == ["decoder"]
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert {k.split(".")[0] for k in stored} == {
        "encoder",
        "quantizer",
        "pre_decode",
        "pixel_decoder",
    }

    loaded = Tokenizer.from_pretrained(tmp_path)
    assert loaded.model.tokenizer.decoder is None  # never a random feature decoder
    assert torch.equal(loaded.encode(batch), ids)
    assert torch.equal(loaded.codes(ids), tokenizer.codes(ids))
    assert torch.equal(loaded.decode(ids), recon)


def test_a_mismatched_pair_is_refused(tmp_path):
    Tokenizer(pair(tiny_vqkd()), omitted=("decoder",)).save_pretrained(tmp_path)
    other = pair(tiny_vqkd(dim=4))  # a tokenizer of 4-d codes under the same decoder
    stored = load_file(str(tmp_path / "model.safetensors"))
    for key, value in other.state_dict().items():
        if key.startswith(("encoder.", "quantizer.")):
            stored[key] = value.contiguous()
    save_file(stored, str(tmp_path / "model.safetensors"))
    with pytest.raises(UserError, match=r"model\.safetensors does not fit.*shape mismatch"):
        Tokenizer.from_pretrained(tmp_path)


@pytest.mark.slow  # builds EfficientNet-Lite0 through timm, twice
def test_cluster_pair_round_trips_with_its_teacher(tmp_path):
    teacher = TeacherConfig(name="efficientnet_lite0", image_size=64)  # real weights, 4x4 grid
    model = pair(
        ClusterConfig(teacher=teacher, quantizer=VectorQuantizerConfig.preset("cluster", 16, 112))
    )
    tokenizer = Tokenizer(model)
    assert tokenizer.image_size == 32 and tokenizer.grid_size(48) == (4, 4)
    batch = images(48)
    ids = tokenizer.encode(batch)
    tokenizer.save_pretrained(tmp_path)
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert {k.split(".")[0] for k in stored} == {
        "teacher",
        "quantizer",
        "pre_decode",
        "pixel_decoder",
    }
    loaded = Tokenizer.from_pretrained(tmp_path)
    assert torch.equal(loaded.encode(batch), ids)
    assert torch.equal(loaded.decode(ids), tokenizer.decode(ids))
    assert loaded.decode(ids).shape == (2, 3, 32, 32)
