"""The evaluation loop: known answers with a lossless tokenizer, padding duplicates, token
files and the ten-crop view (no training, no Inception: fast)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from vq.core.config import Config
from vq.core.data import LoaderConfig
from vq.core.testing import run_distributed
from vq.train.data import PhotosConfig, TokenFileDataset, build_dataset, collate, merge_tokens
from vq.train.evaluation.common import EvalSettings, Meters
from vq.train.evaluation.ten_crop import TenCropStrip
from vq.train.evaluation.tokenizer_pass import evaluate_tokenizer

IMAGE_SIZE = 8


class PixelCodes(nn.Module):
    """A lossless "tokenizer": every uint8 channel value is a code (grid (3H, W), 256 codes)."""

    num_codes = 256

    def encode(self, image: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 3H, W)
        levels = ((image + 1) * 127.5).round().long()
        return levels.flatten(1, 2)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:  # (B, 3H, W) -> (B, 3, H, W)
        return ids.unflatten(1, (3, -1)).float() / 127.5 - 1


class EvalConfig(Config):
    data: PhotosConfig = PhotosConfig(image_size=IMAGE_SIZE)
    loader: LoaderConfig = LoaderConfig(batch_size=2, batch_size_is_global=False, workers=0)


def _evaluate(out_dir: str) -> dict:
    settings = EvalSettings(tokenize=True, visual="image|reconstruction")
    evaluation = evaluate_tokenizer(
        PixelCodes(), EvalConfig(), Meters(), settings, torch.device("cpu"), Path(out_dir)
    )
    return {"metrics": evaluation.metrics, "count": evaluation.image_count}


def _val_images() -> torch.Tensor:
    items = list(build_dataset(PhotosConfig(image_size=IMAGE_SIZE), "val"))
    return collate(items)["original_image"]  # (9, 3, 8, 8) uint8


def test_lossless_tokenizer_gives_known_answers(tmp_path):
    result = _evaluate(str(tmp_path))
    metrics = result["metrics"]
    assert result["count"] == 9
    assert metrics["l1_image_loss"] == 0.0 and metrics["mse_image_loss"] == 0.0
    assert math.isinf(metrics["psnr"]) and metrics["ssim"] == pytest.approx(1.0)
    # the codes are the pixel values: usage/entropy of the pixel histogram of the val set
    counts = torch.bincount(_val_images().flatten(), minlength=256).double()
    p = counts[counts > 0] / counts.sum()
    entropy = float(-(p * p.log()).sum())
    assert metrics["codebook_usage"] == pytest.approx(float((counts > 0).sum()) / 256)
    assert metrics["codebook_entropy"] == pytest.approx(entropy, rel=1e-6)
    assert metrics["codebook_perplexity"] == pytest.approx(math.exp(entropy), rel=1e-6)
    assert "fid" not in metrics  # no Inception given
    pngs = sorted(p.name for p in (tmp_path / "visuals" / "reconstruction").glob("*.png"))
    assert len(pngs) == 9 and "astronaut-0.png" in pngs
    first = torch.from_numpy(
        np.array(Image.open(tmp_path / "visuals" / "image" / "astronaut-0.png"))
    )
    assert torch.equal(first.permute(2, 0, 1), _val_images()[0])


def test_token_file_holds_every_val_image_once_in_order(tmp_path):
    _evaluate(str(tmp_path))
    tokens = TokenFileDataset(tmp_path / "tokens_val.safetensors")
    assert len(tokens) == 9 and tokens.codebook_size == 256
    images = _val_images()
    for i in range(9):
        assert torch.equal(tokens[i]["tokens"], images[i].long().flatten(0, 1))
        assert tokens[i]["category"] == i  # one val crop per photo, in photo order
    assert tokens[0]["id"] == "astronaut/0"


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_with_padding_equal_one_rank(tmp_path):
    # 9 images on 2 ranks: rank 1 re-reads image 0, which must count once.
    single = _evaluate(str(tmp_path / "one"))
    ranks = run_distributed(_evaluate, 2, str(tmp_path / "two"))
    assert ranks[0] == ranks[1]
    one, two = single["metrics"], ranks[0]["metrics"]
    assert one.keys() == two.keys() and ranks[0]["count"] == 9
    for key in one:
        assert one[key] == pytest.approx(two[key], rel=1e-12), key
    a = TokenFileDataset(tmp_path / "one" / "tokens_val.safetensors")
    b = TokenFileDataset(tmp_path / "two" / "tokens_val.safetensors")
    assert [a[i]["id"] for i in range(9)] == [b[i]["id"] for i in range(9)]
    assert all(torch.equal(a[i]["tokens"], b[i]["tokens"]) for i in range(9))
    assert len(list((tmp_path / "two" / "visuals" / "image").glob("*.png"))) == 9


def test_ten_crop_strip_tiles_torchvision_ten_crop():
    image = Image.fromarray(torch.randint(0, 256, (40, 52, 3), dtype=torch.uint8).numpy())
    strip = TenCropStrip(16)(image)  # (3, 160, 16)
    assert strip.shape == (3, 160, 16) and strip.dtype == torch.uint8
    outer = v2.CenterCrop(17)(v2.Resize(17)(image))
    expected = [v2.PILToTensor()(c) for c in v2.TenCrop(16)(outer)]
    for k in range(10):
        assert torch.equal(strip[:, 16 * k : 16 * (k + 1)], expected[k])
    # the mirrored half: the top-left crop of the flipped image is the flipped top-right one
    assert torch.equal(expected[5], expected[1].flip(-1))


def test_merge_tokens_expands_crops(tmp_path):
    parts = [
        {
            "index": torch.tensor([1, 0]),
            "tokens": torch.arange(2 * 10 * 4).reshape(2, 10, 2, 2),
            "category": torch.tensor([7, 3]),
            "ids": ["b", "a"],
        }
    ]
    merge_tokens(tmp_path / "t.safetensors", parts, num_codes=100, crops=10)
    tokens = TokenFileDataset(tmp_path / "t.safetensors")
    assert len(tokens) == 20
    assert tokens[0]["id"] == "a/crop0" and tokens[19]["id"] == "b/crop9"
    assert tokens[0]["category"] == 3 and tokens[10]["category"] == 7
    assert torch.equal(tokens[0]["tokens"], torch.arange(40, 44).reshape(2, 2))
