"""The kinds of tokenizer that the downstream API wraps, found through entry points.

A pretrained directory's ``config.json`` names its ``kind``; ``tokenizer_kind(name)`` finds
the ``TokenizerKind`` that knows how to build that model, which weights the directory holds
and what its images and token grids look like. Kinds are registered in the entry-point
group ``vq.tokenizer_kinds`` of the member that provides the model, so a third package can
add one without touching this one::

    [project.entry-points."vq.tokenizer_kinds"]
    pixel_tokenizer = "vq.tokenizers.kinds:PIXEL_TOKENIZER"   # vq-tokenizers
    decoded_tokenizer = "vq.decoders.api:DECODED_TOKENIZER"    # vq-decoders

| kind | model | pixels |
|---|---|---|
| ``pixel_tokenizer`` | ``PixelTokenizer``: VQGAN, CVQ-VAE, FSQ, LlamaGen VQGAN | in and out |
| ``vqkd`` | ``VQKDTokenizer``: ids and code vectors | in only |
| ``cluster`` | ``ClusterTokenizer``: a frozen teacher and its codebook | in only |
| ``decoded_tokenizer`` | VQ-KD or Cluster with its pixel decoder (vq-decoders) | in and out |

Frozen networks that live outside the module tree (Cluster's teacher) are part of the
weights a directory holds, under their own prefix (``teacher.``), so a directory is
complete: loading it never reads a teacher file from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from vq.core.config import Config
from vq.core.errors import UserError
from vq.core.registry import Registry, UnknownComponentError
from vq.tokenizers.models.cluster import ClusterConfig, ClusterTokenizer
from vq.tokenizers.models.pixel_tokenizer import PixelTokenizer, PixelTokenizerConfig
from vq.tokenizers.models.vqkd import VQKDConfig, VQKDTokenizer

KINDS = Registry("vq.tokenizer_kinds", "tokenizer kind")

# Kinds that ship in a member other than this one, for the message when it is missing.
PROVIDED_BY = {"decoded_tokenizer": "vq-decoders"}


class TokenizerKind:
    """How the API handles one model class; subclasses override what differs.

    ``optional_parts`` are top-level sub-modules that a pretrained directory may leave out
    because encoding and decoding never use them (VQ-KD's feature decoder, which only
    predicts teacher features); they are removed from the loaded model, never left random.
    """

    name: str = ""
    model: type[nn.Module] = nn.Module
    config: type[Config] = Config
    has_pixels: bool = False
    optional_parts: tuple[str, ...] = ()

    def build(self, config: Config) -> nn.Module:
        """A model of this kind with random weights (no frozen network's file is read)."""
        return self.model(self.storable_config(config))

    def storable_config(self, config: Config) -> Config:
        """The config that ``config.json`` records: one that builds without reading files."""
        return config

    def frozen_networks(self, model: nn.Module) -> dict[str, nn.Module]:
        """Networks outside ``model``'s module tree whose weights a directory holds too."""
        return {}

    def state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """Every weight a pretrained directory holds: the model's and its frozen networks'."""
        state = dict(model.state_dict())
        for prefix, network in self.frozen_networks(model).items():
            state.update({f"{prefix}.{k}": v for k, v in network.state_dict().items()})
        return state

    def load_state(self, model: nn.Module, state: dict[str, Tensor]) -> None:
        """Load a state that ``state_dict``'s keys were checked against (up to omitted parts)."""
        networks = self.frozen_networks(model)
        own = {k: v for k, v in state.items() if k.split(".", 1)[0] not in networks}
        for prefix, network in networks.items():
            start = prefix + "."
            network.load_state_dict(
                {k[len(start) :]: v for k, v in state.items() if k.startswith(start)}
            )
        model.load_state_dict(own, strict=False)

    def omit(self, model: nn.Module, part: str) -> None:
        """Remove the optional ``part``: a call that needs it fails loudly."""
        setattr(model, part, None)

    def image_size(self, model: nn.Module) -> int:
        """The square size the model was trained at, when the config says so."""
        return 256

    def downsample_factor(self, model: nn.Module) -> int:
        """Pixels per token side."""
        return model.downsample_factor

    def grid_size(self, model: nn.Module, size: tuple[int, int]) -> tuple[int, int]:
        """Token grid of ``size`` images (already checked against ``downsample_factor``)."""
        return model.grid_size(size)

    def code_dim(self, model: nn.Module) -> int:
        return model.quantizer.dim

    def codes(self, model: nn.Module, ids: Tensor) -> Tensor:  # (B, h, w) -> (B, D, h, w)
        return model.quantizer.codes(ids)


class PixelTokenizerKind(TokenizerKind):
    name = "pixel_tokenizer"
    model = PixelTokenizer
    config = PixelTokenizerConfig
    has_pixels = True


class VQKDKind(TokenizerKind):
    name = "vqkd"
    model = VQKDTokenizer
    config = VQKDConfig
    optional_parts = ("decoder",)

    def image_size(self, model: nn.Module) -> int:
        encoder = model.config.encoder  # the size its position embeddings were trained at
        return encoder.grid_size * encoder.patch_size

    def downsample_factor(self, model: nn.Module) -> int:
        return model.patch_size


def cluster_without_teacher_file(config: ClusterConfig) -> ClusterConfig:
    """The Cluster config with random teacher weights: a directory holds the teacher."""
    teacher = config.teacher.model_copy(update={"weights": None})
    return config.model_copy(update={"teacher": teacher})


def teacher_of(model: ClusterTokenizer) -> dict[str, nn.Module]:
    return {"teacher": model.teacher.network}


class ClusterKind(TokenizerKind):
    """Cluster: the teacher resizes every image, so any input size gives its token grid."""

    name = "cluster"
    model = ClusterTokenizer
    config = ClusterConfig

    def storable_config(self, config: Config) -> Config:
        return cluster_without_teacher_file(config)

    def frozen_networks(self, model: nn.Module) -> dict[str, nn.Module]:
        return teacher_of(model)

    def image_size(self, model: nn.Module) -> int:
        return model.teacher.image_size

    def downsample_factor(self, model: nn.Module) -> int:
        return 1  # any size: the teacher resizes to its own (its grid_size says so)


PIXEL_TOKENIZER = PixelTokenizerKind()
VQKD = VQKDKind()
CLUSTER = ClusterKind()


def kind_names() -> list[str]:
    return KINDS.names()


def tokenizer_kind(name: str, source: str | Path = "config") -> TokenizerKind:
    """The installed kind ``name``; one clear line when no installed member provides it."""
    try:
        kind = KINDS.get(name)
    except UnknownComponentError:
        hint = f" (install {PROVIDED_BY[name]})" if name in PROVIDED_BY else ""
        raise UserError(
            f"{source}: unknown tokenizer kind {name!r}{hint}; installed: "
            f"{', '.join(kind_names()) or 'none'}"
        ) from None
    if not isinstance(kind, TokenizerKind):
        raise UserError(f"entry point {name!r} of {KINDS.group!r} is not a TokenizerKind")
    return kind


def kind_of(model: nn.Module) -> TokenizerKind:
    """The installed kind whose model class ``model`` is."""
    for name in kind_names():
        kind = tokenizer_kind(name)
        if type(model) is kind.model:
            return kind
    raise UserError(
        f"the tokenizer API does not know {type(model).__name__}; installed kinds: "
        + ", ".join(kind_names())
    )


__all__ = [
    "CLUSTER",
    "KINDS",
    "PIXEL_TOKENIZER",
    "VQKD",
    "ClusterKind",
    "PixelTokenizerKind",
    "TokenizerKind",
    "VQKDKind",
    "cluster_without_teacher_file",
    "kind_names",
    "kind_of",
    "teacher_of",
    "tokenizer_kind",
]
