"""LlamaGen's ten-crop codes of the train split (``test --ten-crop``), as one token file.

Every train image becomes ten S x S crops (``TenCropStrip``), each tokenized; the file holds
ten consecutive grids per image with ids ``<id>/crop<k>`` (``merge_tokens(crops=10)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, Dataset
from torchvision.transforms import v2

from vq.core import amp
from vq.core.errors import UserError
from vq.train.data import build_dataset
from vq.train.data.token_files import merge_tokens, token_part
from vq.train.evaluation.common import INDEX, EvalSettings, eval_loader, owned_mask
from vq.train.tokenizer_run import TokenizerRunConfig

TEN_CROP_TOKENS_FILE = "tokens_train_tencrop.safetensors"
CROPS = 10


class TenCropStrip(nn.Module):
    """LlamaGen's ten-crop view of an image, tiled vertically: PIL RGB -> uint8 (3, 10 S, S).

    Resize the short side to int(1.1 S) (torchvision's default bilinear, as LlamaGen), centre
    crop int(1.1 S), then the four corners and the centre of S, and the same five of the
    mirrored image. Tiling the crops keeps the dataset item contract (one (3, H, W) image),
    so every dataset tokenizes this way without knowing about crops.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        outer = int(1.1 * size)
        self.prepare = v2.Compose([v2.Resize(outer), v2.CenterCrop(outer)])
        self.crops = v2.TenCrop(size)
        self.to_tensor = v2.PILToTensor()

    def forward(self, image: Any) -> Tensor:
        crops = self.crops(self.prepare(image))  # 10 PIL images of S x S
        return torch.cat([self.to_tensor(c) for c in crops], dim=1)  # (3, 10 S, S)


def _replace_transform(dataset: Dataset, transform: Any) -> None:
    if isinstance(dataset, ConcatDataset):
        for part in dataset.datasets:
            _replace_transform(part, transform)
        return
    if not hasattr(dataset, "transform"):
        raise UserError(f"{type(dataset).__name__} has no transform to replace for ten-crop")
    dataset.transform = transform  # type: ignore[attr-defined]


@torch.no_grad()
def tokenize_ten_crop(
    tokenizer: nn.Module,
    config: TokenizerRunConfig,
    settings: EvalSettings,
    device: torch.device,
    path: Path,
) -> None:
    """LlamaGen-style ten-crop codes of the train split into the token file ``path``."""
    size = config.image_size
    dataset = build_dataset(config.data, "train")
    _replace_transform(dataset, TenCropStrip(size))
    loader, owned = eval_loader(dataset, config.loader, device, settings.batch_size)
    parts: list[dict[str, Any]] = []
    for batch in loader:
        if not len(batch["id"]):
            continue
        kept = owned_mask(batch[INDEX], owned).nonzero().flatten()
        if not kept.numel():
            continue
        strips = batch["image"][kept].to(device)  # (B, 3, 10 S, S)
        b = strips.shape[0]
        crops = (
            strips.unflatten(2, (CROPS, size)).permute(0, 2, 1, 3, 4).flatten(0, 1)
        )  # (10 B, 3, S, S)
        with amp.autocast(device, settings.autocast):
            ids = tokenizer.encode(crops)  # (10 B, h, w)
        grids = ids.unflatten(0, (b, CROPS))  # (B, 10, h, w)
        image_ids = [batch["id"][i] for i in kept.tolist()]
        parts.append(token_part(batch[INDEX][kept], grids, batch["category"][kept], image_ids))
    merge_tokens(path, parts, tokenizer.num_codes, crops=CROPS)


__all__ = ["TEN_CROP_TOKENS_FILE", "TenCropStrip", "tokenize_ten_crop"]
