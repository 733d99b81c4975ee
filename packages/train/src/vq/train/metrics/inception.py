"""torch-fidelity's Inception-v3 feature extractor, built from a local weights file.

``InceptionFeatures`` is the ``inception-v3-compat`` network (the TF 2015-12-05 graph that
FID numbers in papers use). uint8 images ``(B, 3, H, W)`` of any size go in; it resizes to
299 the way TF1 did and returns the 2048-d pool features (FID, KID) and the unbiased
1008-way logits (IS). The weights are read with ``weights_only=True`` and checked before
the network is built; torch-fidelity is imported when the network is built, not before.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from vq.core.amp import fp32_region
from vq.core.errors import UserError

INCEPTION_WEIGHTS = Path("pretrained/inception/pt_inception-2015-12-05-6726825d.pth")
INCEPTION_URLS = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth",
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth",
)
FEATURE_EXTRACTOR = "torch-fidelity inception-v3-compat, 2048-d pool features"

FEATURES = "features"  # (N, 2048) pool features: FID and KID
LOGITS = "logits"  # (N, 1008) logits without the fc bias: IS


# First and last convolutions and the classifier: a cheap check before building the network.
_SENTINEL_KEYS = ("Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.conv.weight", "fc.weight")


def _read_inception_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(
            f"Inception weights for FID/IS/KID not found: {path} (resolved: {path.resolve()}). "
            f"Download {INCEPTION_URLS[0]} (pytorch-fid) or its twin {INCEPTION_URLS[1]} "
            f"(torch-fidelity) and save it as {path}, or pass the path of your copy."
        )
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        detail = " ".join(str(error).split())
        raise UserError(f"cannot read Inception weights {path}: {detail}") from error
    if not isinstance(state_dict, Mapping):
        raise UserError(f"{path} holds a {type(state_dict).__name__}, not a state dict")
    missing = [key for key in _SENTINEL_KEYS if key not in state_dict]
    if missing:
        raise UserError(f"{path} is not an Inception-v3 state dict: no {', '.join(missing)}")
    if tuple(state_dict["fc.weight"].shape) != (1008, 2048):
        raise UserError(
            f"{path} has a {tuple(state_dict['fc.weight'].shape)} classifier, expected "
            "(1008, 2048): FID needs the 2015-12-05 TF Inception, not an ImageNet-1k one"
        )
    return dict(state_dict)


class InceptionFeatures(nn.Module):
    """Frozen Inception-v3 (FID variant): uint8 ``(B, 3, H, W)`` -> pool features and logits.

    The weights are read here with ``weights_only=True``. torch-fidelity's constructor would
    unpickle the file without that safety, so it receives an in-memory copy of the checked
    tensors instead of the path. The network always runs in fp32 outside autocast: FID is
    sensitive to small feature changes, and bf16 features would shift it.
    """

    def __init__(self, weights_path: str | os.PathLike[str] = INCEPTION_WEIGHTS) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.weights_path = Path(weights_path)
        state_dict = _read_inception_state_dict(self.weights_path)
        # Files exported without BatchNorm's step counters load too (the counter is unused).
        for key in [k for k in state_dict if k.endswith(".bn.running_mean")]:
            state_dict.setdefault(
                key.replace("running_mean", "num_batches_tracked"), torch.tensor(0)
            )
        buffer = io.BytesIO()
        torch.save(state_dict, buffer)
        buffer.seek(0)
        try:
            self.network = FeatureExtractorInceptionV3(
                "inception-v3-compat",
                ["2048", "logits_unbiased"],
                feature_extractor_weights_path=buffer,
            )
        except RuntimeError as error:  # load_state_dict: missing, unexpected or mis-shaped keys
            detail = " ".join(str(error).split())  # one line, as UserErrors are printed
            raise UserError(f"{self.weights_path} does not fit Inception-v3: {detail}") from error

    def train(self, mode: bool = True) -> InceptionFeatures:
        """Always eval: a parent's ``.train()`` must not switch BatchNorm to batch statistics."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 ``(B, 3, H, W)`` -> ``{"features": (B, 2048), "logits": (B, 1008)}`` fp32."""
        if images.dtype != torch.uint8:
            raise TypeError(f"Inception takes uint8 images in [0, 255], got {images.dtype}")
        with fp32_region():
            features, logits = self.network(images)
        return {FEATURES: features, LOGITS: logits}
