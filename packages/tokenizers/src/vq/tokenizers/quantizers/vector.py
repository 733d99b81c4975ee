"""Vector quantization with a learned codebook (VQ-VAE / VQGAN / CVQ-VAE / VQ-KD / Cluster).

One module covers the codebook recipes of the reference, which differ only in a few
switches (see ``VECTOR_PRESETS``):

* distance: squared L2 or cosine; optionally l2-normalised codes *and* inputs (VQ-KD);
* initialisation: uniform(-1/K, 1/K), or k-means on the first training batch (VQ-KD);
* update: gradients of a codebook loss MSE(e, sg(x)), or an EMA of the assigned inputs
  (VQ-KD, the codebook then gets no gradient);
* a commitment loss beta * MSE(sg(e), x), optionally on l2-normalised vectors;
* CVQ-VAE re-initialisation of dead codes.

The forward pass is: search the nearest codes with the current codebook, update the
codebook (training only: k-means, EMA, dead codes), then look the codes up in the updated
codebook, so ``quantized`` always equals ``codes(indices)`` after the call. The encoder
gets its gradient through the straight-through estimator ``x + sg(e - x)``. All distances,
updates and losses run in fp32 whatever the autocast state.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from vq.core.amp import float32, fp32_region
from vq.core.config import Config
from vq.core.distributed import all_reduce_
from vq.tokenizers.quantizers.base import Quantizer, QuantizerOutput, flatten_map, unflatten_map
from vq.tokenizers.quantizers.cvq import CVQConfig, DeadCodeReviver
from vq.tokenizers.quantizers.kmeans import distributed_kmeans
from vq.tokenizers.quantizers.search import (
    DEFAULT_CHUNK_ROWS,
    Distance,
    SearchResult,
    nearest_codes,
)
from vq.tokenizers.quantizers.statistics import codebook_statistics


class VectorQuantizerConfig(Config):
    """A codebook of ``num_codes`` vectors of size ``dim`` and how it is learned."""

    kind: Literal["vector"] = "vector"
    num_codes: int = Field(8192, ge=1)
    dim: int = Field(256, ge=1)
    distance: Distance = "l2"
    normalize: bool = False
    """l2-normalise inputs and codes before everything else (VQ-KD, LlamaGen)."""
    init: Literal["uniform", "kmeans"] = "uniform"
    """uniform(-1/K, 1/K), or k-means on the features of the first training forward."""
    kmeans_iterations: int = Field(10, ge=0)
    update: Literal["gradient", "ema"] = "gradient"
    """Learn the codebook by the codebook loss, or by an EMA of the assigned inputs."""
    ema_decay: float = Field(0.99, gt=0.0, lt=1.0)
    codebook_weight: float | None = Field(None, ge=0.0)
    """Weight of MSE(e, sg(x)); None means 1 for gradient updates and 0 for EMA."""
    commitment_weight: float = Field(0.25, ge=0.0)
    """beta, the weight of the commitment loss."""
    commitment: Literal["mse", "normalized_mse"] = "mse"
    """MSE(sg(e), x), or the same between l2-normalised vectors (VQ-KD)."""
    cvq: CVQConfig | None = None
    """Re-initialise dead codes as CVQ-VAE (None: off)."""
    search_chunk_rows: int = Field(DEFAULT_CHUNK_ROWS, ge=1)
    """Rows per chunk of the nearest-code search: memory is chunk_rows x num_codes floats."""

    @model_validator(mode="after")
    def _check_update(self) -> VectorQuantizerConfig:
        if self.update == "ema" and self.codebook_weight:
            raise ValueError(
                "codebook_weight must be 0 (or None) with update='ema': "
                "an EMA codebook gets no gradient"
            )
        return self

    @property
    def resolved_codebook_weight(self) -> float:
        if self.codebook_weight is not None:
            return self.codebook_weight
        return 1.0 if self.update == "gradient" else 0.0

    @classmethod
    def preset(cls, name: str, num_codes: int, dim: int, **overrides: Any) -> VectorQuantizerConfig:
        """The quantizer of a reference recipe (``VECTOR_PRESETS``), e.g. ``preset("vqkd", 8192, 32)``."""
        if name not in VECTOR_PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(VECTOR_PRESETS)}")
        return cls(num_codes=num_codes, dim=dim, **{**VECTOR_PRESETS[name], **overrides})


VECTOR_PRESETS: dict[str, dict[str, Any]] = {
    # taming VQGAN: L2, uniform init, codebook loss + 0.25 commitment.
    "vqgan": {"distance": "l2"},
    # CVQ-VAE as the reference resolves it: the VQGAN quantizer plus dead-code revival (L2).
    "cvqvae": {"distance": "l2", "cvq": CVQConfig()},
    # VQ-KD: normalised codes, cosine, k-means init, EMA codebook, normalised commitment (beta 1).
    "vqkd": {
        "distance": "cosine",
        "normalize": True,
        "init": "kmeans",
        "update": "ema",
        "commitment": "normalized_mse",
        "commitment_weight": 1.0,
    },
    # Cluster: cosine search over raw features, codebook loss only, globally synced CVQ.
    "cluster": {
        "distance": "cosine",
        "codebook_weight": 1.0,
        "commitment_weight": 0.0,
        "cvq": CVQConfig(sync=True),
    },
}


class VectorQuantizer(Quantizer):
    """Nearest-neighbour quantizer over a (K, D) codebook; see the module docstring."""

    codebook: Tensor  # (K, D): a parameter for gradient updates, a buffer for EMA
    initialized: Tensor  # () bool: False until the lazy k-means has run (kept in checkpoints)

    def __init__(self, cfg: VectorQuantizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_codes = cfg.num_codes
        self.dim = cfg.dim
        weight = torch.empty(cfg.num_codes, cfg.dim)
        if cfg.update == "gradient":
            self.codebook = nn.Parameter(weight)
        else:
            self.register_buffer("codebook", weight)
        self.register_buffer("initialized", torch.tensor(False))
        # ``initialized`` mirrored on the host, so that forward never reads the buffer (a
        # device sync); set with the buffer and again whenever a state dict is loaded.
        self._kmeans_pending = False
        self.reviver = DeadCodeReviver(cfg.num_codes, cfg.cvq) if cfg.cvq is not None else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """uniform(-1/K, 1/K); with ``init='kmeans'`` the next training forward re-initialises."""
        bound = 1.0 / self.num_codes
        self.codebook.uniform_(-bound, bound)
        self.initialized.fill_(self.cfg.init == "uniform")
        self._kmeans_pending = self.cfg.init == "kmeans"
        if self.reviver is not None:
            self.reviver.usage.zero_()

    def inplace_updated_parameters(self) -> list[nn.Parameter]:
        """The codebook when it is a parameter that the forward changes in place (CVQ
        revival, lazy k-means): data-parallel wrappers keep it whole on every rank
        (``vq.core.parallel``)."""
        changed = self.reviver is not None or self.cfg.init == "kmeans"
        return [self.codebook] if changed and isinstance(self.codebook, nn.Parameter) else []

    def code_vectors(self) -> Tensor:
        """(K, D) fp32 codes in the space inputs are compared in (normalised if ``normalize``)."""
        codebook = float32(self.codebook)
        return F.normalize(codebook, dim=1) if self.cfg.normalize else codebook

    def _prepare(self, z: Tensor) -> Tensor:
        """(B, D, h, w) -> (N, D) fp32 rows, l2-normalised if ``normalize``."""
        x = float32(flatten_map(z))
        return F.normalize(x, dim=1) if self.cfg.normalize else x

    @torch.no_grad()
    def _search(self, x: Tensor, with_code_rows: bool = False) -> tuple[SearchResult, Tensor]:
        """The one search from prepared rows ``x`` (N, D) to code ids, shared by ``forward``
        and ``indices``; also returns the (K, D) codebook it searched."""
        codebook = self.code_vectors()  # (K, D)
        found = nearest_codes(
            x, codebook, self.cfg.distance, self.cfg.search_chunk_rows, with_code_rows
        )
        return found, codebook

    def forward(self, z: Tensor) -> QuantizerOutput:
        self._check_input(z)
        with fp32_region():
            x = self._prepare(z)  # (N, D)
            if self.training and self._kmeans_pending:
                self._kmeans_init(x.detach())

            # Local CVQ anchors come out of the same search; synced ones need all features.
            revive_locally = (
                self.training and self.reviver is not None and not self.reviver.cfg.sync
            )
            found, search_codebook = self._search(x, revive_locally)
            if self.training:
                self._update_codebook(x.detach(), found.indices, search_codebook, found.code_rows)

            codes = F.embedding(found.indices, self.code_vectors())  # (N, D)
            losses = self._losses(x, codes)
            quantized = x + (codes - x).detach()  # straight-through estimator

        indices = found.indices.reshape(z.shape[0], z.shape[2], z.shape[3])  # (B, h, w)
        return QuantizerOutput(
            quantized=unflatten_map(quantized, z.shape).to(z.dtype),
            indices=indices,
            losses=losses,
            statistics=codebook_statistics(indices, self.num_codes),
        )

    def _losses(self, x: Tensor, codes: Tensor) -> dict[str, Tensor]:
        """Weighted codebook and commitment losses on (N, D) fp32 rows."""
        losses: dict[str, Tensor] = {}
        codebook_weight = self.cfg.resolved_codebook_weight
        if codebook_weight > 0:
            losses["codebook"] = codebook_weight * F.mse_loss(codes, x.detach())
        if self.cfg.commitment_weight > 0:
            if self.cfg.commitment == "normalized_mse":
                target, x = F.normalize(codes.detach(), dim=1), F.normalize(x, dim=1)
            else:
                target = codes.detach()
            losses["commitment"] = self.cfg.commitment_weight * F.mse_loss(x, target)
        return losses

    @torch.no_grad()
    def _kmeans_init(self, x: Tensor) -> None:
        cfg = self.cfg
        centroids = distributed_kmeans(
            x,
            cfg.num_codes,
            iterations=cfg.kmeans_iterations,
            distance=cfg.distance,
            normalize=cfg.normalize,
            chunk_rows=cfg.search_chunk_rows,
        )  # (K, D), identical on every rank
        self.codebook.copy_(centroids)
        self.initialized.fill_(True)
        self._kmeans_pending = False

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        # one host read per load, not per forward
        self._kmeans_pending = self.cfg.init == "kmeans" and not bool(self.initialized)

    @torch.no_grad()
    def _update_codebook(
        self, x: Tensor, indices: Tensor, search_codebook: Tensor, code_rows: Tensor | None
    ) -> None:
        """EMA and dead-code updates of one training step (x (N, D), indices (N,))."""
        if self.cfg.update == "ema":
            self.codebook.copy_(self.ema_step(x, indices))
        if self.reviver is not None:
            self.reviver.update_usage(indices)
            anchors = self.reviver.anchors(
                x, search_codebook, self.cfg.distance, self.cfg.search_chunk_rows, code_rows
            )
            self.reviver.revive_(self.codebook, anchors)

    @torch.no_grad()
    def ema_step(self, x: Tensor, indices: Tensor) -> Tensor:
        """The codebook (K, D) after one EMA step towards the mean of each code's inputs.

        Per-code sums and counts are summed over ranks, so every rank computes the same
        update; codes no rank assigned keep their value. Normalised codebooks are projected
        back onto the unit sphere.
        """
        k, d = self.codebook.shape
        stats = torch.zeros(k, d + 1, dtype=x.dtype, device=x.device)  # sums | count
        stats[:, :d].index_add_(0, indices, x)
        stats[:, d].index_add_(0, indices, torch.ones_like(indices, dtype=x.dtype))
        all_reduce_(stats)
        sums, counts = stats[:, :d], stats[:, d:]  # (K, D), (K, 1)
        current = self.code_vectors()
        decay = self.cfg.ema_decay
        moved = decay * current + (1.0 - decay) * sums / counts.clamp_min(1.0)
        if self.cfg.normalize:
            moved = F.normalize(moved, dim=1)
        return torch.where(counts > 0, moved, current)

    def codes(self, indices: Tensor) -> Tensor:
        rows = F.embedding(indices.reshape(-1), self.code_vectors())  # (N, D)
        b, h, w = indices.shape
        return unflatten_map(rows, torch.Size((b, self.dim, h, w)))

    @torch.no_grad()
    def indices(self, z: Tensor) -> Tensor:
        self._check_input(z)
        with fp32_region():
            found, _ = self._search(self._prepare(z))
        return found.indices.reshape(z.shape[0], z.shape[2], z.shape[3])

    def extra_repr(self) -> str:
        c = self.cfg
        return (
            f"num_codes={c.num_codes}, dim={c.dim}, distance={c.distance}, "
            f"normalize={c.normalize}, init={c.init}, update={c.update}"
        )
