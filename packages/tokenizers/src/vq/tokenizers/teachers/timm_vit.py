"""Teachers whose network is a timm Vision Transformer (CLIP, DINO, MAE, OpenCLIP, EVA-CLIP).

timm builds each of these image towers offline with ``pretrained=False`` and knows how to
read their original checkpoints (OpenAI/OpenCLIP ``visual.*`` layouts, DINO, MAE) through
its per-architecture ``checkpoint_filter_fn``, so one wrapper serves five families. Models
are created with ``dynamic_img_size=True``: position embeddings (or EVA's rotary tables)
are resampled to the input grid on the fly, so a teacher runs at any multiple of its patch
size (Cluster feeds CLIP 256 px images for 16x16 tokens) and its checkpoint stays the
native one.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from vq.core.errors import UserError
from vq.tokenizers.teachers.base import Teacher, import_optional, tokens_to_grid


class TimmViTTeacher(Teacher):
    """Patch tokens after the final norm of a timm ViT, optionally through its head.

    For CLIP-style towers the timm ``head`` is the image projection (``ln_post @ proj``
    of the original models); ``with_projection`` applies it to every patch token.
    """

    def __init__(
        self,
        model_name: str,
        *,
        name: str,
        with_projection: bool,
        image_size: int | None = None,
        arch: Mapping[str, Any] | None = None,
    ) -> None:
        timm = import_optional("timm")
        network = timm.create_model(
            model_name, pretrained=False, dynamic_img_size=True, **dict(arch or {})
        )
        head = network.head
        if with_projection and not isinstance(head, nn.Linear):
            raise UserError(f"teacher {name!r} ({model_name}) has no projection head")
        config = network.pretrained_cfg
        super().__init__(
            network,
            name=name,
            dim=head.out_features if with_projection else network.embed_dim,
            patch_size=network.patch_embed.patch_size[0],
            image_size=image_size or network.patch_embed.img_size[0],
            mean=tuple(255.0 * m for m in config["mean"]),
            std=tuple(255.0 * s for s in config["std"]),
        )
        self.model_name = model_name
        self.with_projection = with_projection

    def extract(self, x: Tensor) -> Tensor:
        network = self.network
        tokens = network.forward_features(x)  # (B, prefix + h*w, C) after the final norm
        tokens = tokens[:, network.num_prefix_tokens :]  # (B, h*w, C): patch tokens only
        if self.with_projection:
            tokens = network.head(tokens)  # (B, h*w, dim)
        return tokens_to_grid(tokens, x.shape[-2] // self.patch_size)  # (B, dim, h, w)

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        # timm's own converter for this architecture: identity on timm checkpoints, maps
        # original OpenAI / OpenCLIP / DINO / MAE / EVA layouts onto timm names.
        module = sys.modules[type(self.network).__module__]
        return module.checkpoint_filter_fn(state, self.network)
