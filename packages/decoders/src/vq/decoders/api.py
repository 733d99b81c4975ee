"""The downstream API for a feature tokenizer paired with its pixel decoder.

The paper generates with VQ-KD or Cluster tokens decoded to pixels by a pixel decoder
trained on them. With ``vq-decoders`` installed, such a pair is one tokenizer of kind
``decoded_tokenizer`` for ``vq.tokenizers.api``: the same directory format, the same calls::

    from vq.decoders.api import Tokenizer    # the same class as vq.tokenizers.api.Tokenizer

    tokenizer = Tokenizer.from_pretrained("tokenizers/vqkd_clip_llamagen")
    ids = tokenizer.encode(images)           # uint8 (B, 3, H, W) or [-1, 1] -> (B, 16, 16)
    codes = tokenizer.codes(ids)             # (B, 32, 16, 16) the frozen tokenizer's codes
    recon = tokenizer.decode(ids)            # (B, 3, H, W) in [-1, 1]: the pixel decoder's

``uv run export`` writes such a directory from a pixel-decoder run (the run's checkpoint
holds the decoder, ``--tokenizer-weights`` the frozen tokenizer's run). Its
``model.safetensors`` holds the tokenizer's weights under their own names (``encoder.``,
``quantizer.``; Cluster's teacher under ``teacher.``), the decoder's beside them
(``pre_decode.``, ``pixel_decoder.``). VQ-KD's feature decoder, which only predicts teacher
features, is left out by default (``omitted_parts``).

``DECODED_TOKENIZER`` is registered in the ``vq.tokenizer_kinds`` entry-point group of this
member, which is how ``Tokenizer.from_pretrained`` finds it.
"""

from __future__ import annotations

from torch import Tensor, nn

from vq.core.config import Config
from vq.decoders.decoded_tokenizer import DecodedTokenizer, DecodedTokenizerConfig
from vq.tokenizers.api import Tokenizer
from vq.tokenizers.kinds import TokenizerKind, cluster_without_teacher_file, teacher_of
from vq.tokenizers.models.cluster import ClusterConfig, ClusterTokenizer


class DecodedTokenizerKind(TokenizerKind):
    """A ``DecodedTokenizer``: its encoding is the feature tokenizer's, its decoding the
    pixel decoder's."""

    name = "decoded_tokenizer"
    model = DecodedTokenizer
    config = DecodedTokenizerConfig
    has_pixels = True
    optional_parts = ("decoder",)  # VQ-KD's feature decoder

    def storable_config(self, config: Config) -> Config:
        if isinstance(config.tokenizer, ClusterConfig):
            return config.model_copy(
                update={"tokenizer": cluster_without_teacher_file(config.tokenizer)}
            )
        return config

    def frozen_networks(self, model: nn.Module) -> dict[str, nn.Module]:
        if isinstance(model.tokenizer, ClusterTokenizer):
            return teacher_of(model.tokenizer)
        return {}

    def omit(self, model: nn.Module, part: str) -> None:
        # The part is registered on the pair and held by its tokenizer: drop both references.
        setattr(model, part, None)
        setattr(model.tokenizer, part, None)

    def image_size(self, model: nn.Module) -> int:
        inner = model.tokenizer
        if isinstance(inner, ClusterTokenizer):  # the size the decoder reconstructs
            return inner.teacher.grid_size * model.upsample_factor
        encoder = model.config.tokenizer.encoder
        return encoder.grid_size * encoder.patch_size

    def downsample_factor(self, model: nn.Module) -> int:
        inner = model.tokenizer
        return 1 if isinstance(inner, ClusterTokenizer) else inner.patch_size

    def code_dim(self, model: nn.Module) -> int:
        return model.config.code_dim

    def codes(self, model: nn.Module, ids: Tensor) -> Tensor:  # (B, h, w) -> (B, D, h, w)
        return model.tokenizer.codes(ids)


DECODED_TOKENIZER = DecodedTokenizerKind()

__all__ = ["DECODED_TOKENIZER", "DecodedTokenizerKind", "Tokenizer"]
