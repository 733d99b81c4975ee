"""FID, Inception Score and KID from Inception-v3 features, on one process or many.

The pipeline has four small parts:

1. ``InceptionFeatures`` (``vq.train.metrics.inception``): torch-fidelity's
   ``inception-v3-compat`` network, uint8 images in, 2048-d pool features (FID, KID) and
   unbiased 1008-way logits (IS) out.
2. ``FeatureAccumulator``: collects those rows on every rank and gathers them once, dropping
   the duplicates that a ``DistributedSampler`` adds to make the ranks even.
3. ``FIDStatistics``: ``(mu, sigma)`` in float64, cached as ``pretrained/fid/<name>.npz``
   with metadata saying what they were computed from (no pickles).
4. ``frechet_distance``, ``inception_score``, ``kernel_inception_distance`` and
   ``compute_fidelity``, which reproduce torch-fidelity's definitions and defaults (IS:
   10 splits of a seeded shuffle; KID: 100 subsets of 1000, cubic polynomial kernel).

Preprocessing differs from the reference repository's own FID code (which normalises with
mean = std = 127.5 and uses torch's bilinear resize): we use torch-fidelity's extractor
unchanged, so our numbers equal ``torch_fidelity.calculate_metrics`` on the same images.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import linalg

from vq.core import distributed
from vq.core.errors import UserError
from vq.train.metrics.inception import FEATURES, LOGITS

FID_CACHE_DIR = Path("pretrained/fid")


# --------------------------------------------------------------------------------------------
# Collecting rows across ranks
# --------------------------------------------------------------------------------------------


class FeatureAccumulator:
    """Per-sample rows collected on every rank and gathered once, in dataset order.

    A ``DistributedSampler`` pads the dataset so that every rank gets the same number of
    samples: with N samples on W ranks, ``ceil(N/W)*W - N`` of them are seen twice.
    Counting them would bias the statistics, so the accumulator keeps exactly N rows, in the
    order of the dataset. Callers choose one of two contracts:

    * ``update(rows, index=idx)`` with the global dataset index of every sample (robust to
      any sampler, shuffled or not): rows are sorted by index and repeated indices dropped;
      ``num_samples``, when given, is checked against the number of distinct indices.
    * ``update(rows)`` without indices and ``num_samples=len(dataset)``: the samples must
      come from an unshuffled ``DistributedSampler`` (rank r holds samples r, r+W, r+2W, ...,
      wrapping around to the start for padding); the rows are re-interleaved into dataset
      order and the first N kept.

    Rows wait on the CPU (50k images of features and logits take 600 MB) and travel back to
    the device they came from for the gather, since NCCL only moves GPU tensors.
    ``gather()`` is a collective: every rank must call it, and every rank receives all rows
    (on the CPU).
    """

    def __init__(self, num_samples: int | None = None) -> None:
        self.num_samples = num_samples
        self._rows: dict[str, list[torch.Tensor]] = {}
        self._indices: list[torch.Tensor] = []
        self._indexed: bool | None = None  # fixed by the first update
        self._device = torch.device("cpu")  # where the rows came from: the gather runs there

    def update(self, rows: Mapping[str, torch.Tensor], index: torch.Tensor | None = None) -> None:
        """Add a batch: ``rows`` maps names to ``(B, D)`` tensors; ``index`` is ``(B,)`` long."""
        sizes = {v.shape[0] for v in rows.values()}
        if len(sizes) != 1:
            raise ValueError(f"rows of one batch must have the same length, got {sizes}")
        if self._rows and set(rows) != set(self._rows):
            raise ValueError(f"expected rows {sorted(self._rows)}, got {sorted(rows)}")
        if self._indexed is None:
            self._indexed = index is not None
        if self._indexed != (index is not None):
            raise ValueError("pass `index` for every batch or for none")
        if index is not None:
            if index.shape != (next(iter(sizes)),):
                raise ValueError(f"index must be (B,), got {tuple(index.shape)}")
            self._indices.append(index.detach().long().cpu())
        self._device = next(iter(rows.values())).device
        for name, value in rows.items():
            self._rows.setdefault(name, []).append(value.detach().float().cpu())

    def gather(self) -> dict[str, torch.Tensor]:
        """All ranks' rows without padding duplicates, in dataset order: name -> ``(N, D)``."""
        if not self._rows:
            raise RuntimeError("FeatureAccumulator.gather() called before any update()")
        local = {name: torch.cat(parts).to(self._device) for name, parts in self._rows.items()}
        gathered = {name: distributed.all_gather_cat(rows).cpu() for name, rows in local.items()}
        if self._indexed:
            indices = torch.cat(self._indices).to(self._device)
            order = self._order_by_index(distributed.all_gather_cat(indices).cpu())
        else:
            order = self._order_by_position(next(iter(local.values())).shape[0])
        return {name: rows[order] for name, rows in gathered.items()}

    def _order_by_index(self, indices: torch.Tensor) -> torch.Tensor:
        # A stable sort keeps the first occurrence of each index first; keep only that one.
        order = torch.sort(indices, stable=True).indices  # (M,)
        sorted_indices = indices[order]
        first = torch.ones_like(sorted_indices, dtype=torch.bool)
        first[1:] = sorted_indices[1:] != sorted_indices[:-1]
        order = order[first]
        if self.num_samples is not None and order.numel() != self.num_samples:
            raise ValueError(
                f"expected {self.num_samples} distinct samples, got {order.numel()} distinct indices"
            )
        return order

    def _order_by_position(self, local_count: int) -> torch.Tensor:
        if self.num_samples is None:
            raise ValueError("without per-sample indices, FeatureAccumulator needs num_samples")
        world = distributed.world_size()
        counts = distributed.all_gather_objects(local_count)
        per_rank = -(-self.num_samples // world)  # ceil(N / W)
        if any(c != per_rank for c in counts):
            raise ValueError(
                f"without indices every rank must hold ceil(N/W) = {per_rank} samples "
                f"(an unshuffled DistributedSampler), got {counts}"
            )
        # Sample p of the padded dataset sits on rank p % W at slot p // W.
        position = torch.arange(self.num_samples)
        return (position % world) * per_rank + position // world


# --------------------------------------------------------------------------------------------
# Statistics and their cache
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FIDStatistics:
    """Mean ``(D,)`` and covariance ``(D, D)`` of a reference set's features, in float64.

    ``metadata`` records what they describe (dataset, split, image_count, preprocessing,
    feature_extractor); comparing generated images with statistics of a different
    preprocessing or network gives a meaningless FID, so loaders can check it.
    """

    mu: np.ndarray
    sigma: np.ndarray
    metadata: dict[str, str | int] = field(default_factory=dict)

    @classmethod
    def from_features(cls, features: torch.Tensor, **metadata: str | int) -> FIDStatistics:
        """Statistics of ``(N, D)`` features (N >= 2); ``image_count`` is filled in."""
        x = features.detach().cpu().double().numpy()  # (N, D)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"need (N >= 2, D) features, got {x.shape}")
        metadata = {"image_count": x.shape[0], **metadata}
        return cls(mu=x.mean(axis=0), sigma=np.cov(x, rowvar=False), metadata=metadata)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write an ``.npz`` (metadata as a JSON string) atomically: temporary file, rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            np.savez(f, mu=self.mu, sigma=self.sigma, metadata=np.array(json.dumps(self.metadata)))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], expect: Mapping[str, str | int] | None = None
    ) -> FIDStatistics:
        """Read a cache written by ``save``; ``expect`` lists metadata values that must match."""
        path = Path(path)
        if not path.is_file():
            raise UserError(
                f"FID reference statistics not found: {path} (resolved: {path.resolve()}). "
                "Compute them once with the `fid` command for that dataset and split."
            )
        with np.load(path, allow_pickle=False) as data:
            stats = cls(
                mu=data["mu"].astype(np.float64),
                sigma=data["sigma"].astype(np.float64),
                metadata=json.loads(str(data["metadata"])),
            )
        for key, value in (expect or {}).items():
            if stats.metadata.get(key) != value:
                raise UserError(
                    f"FID statistics {path} were computed with {key}={stats.metadata.get(key)!r}, "
                    f"expected {value!r}; recompute them with the `fid` command"
                )
        return stats


def fid_statistics_path(name: str, root: str | os.PathLike[str] = FID_CACHE_DIR) -> Path:
    """Where the statistics of reference set ``name`` (e.g. ``imagenet_val``) are cached."""
    return Path(root) / f"{name}.npz"


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance of two Gaussians: |mu1-mu2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)).

    With fewer samples than dimensions the covariances are singular. The Schur-based root
    stays accurate there (it matches the eigenvalue form to ~1e-8 relative on 9 samples of
    2048-d features) but may come back non-finite; then ``eps * I`` is added to both and the
    root taken again. On 2048-d statistics this one ``sqrtm`` is the slow step (seconds to
    tens of seconds on a few CPU cores), which is why tests call it sparingly. Round-off leaves a small imaginary part on the root, which is dropped when below
    1e-3 on the diagonal; a larger one means the inputs are broken and raises.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = (
        np.atleast_2d(sigma1).astype(np.float64),
        np.atleast_2d(sigma2).astype(np.float64),
    )
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"statistics differ in shape: {mu1.shape}/{mu2.shape}, {sigma1.shape}/{sigma2.shape}"
        )

    with warnings.catch_warnings():
        # Fewer samples than dimensions make S1 S2 singular; that is normal, and the checks
        # below catch the cases where the root really failed.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imaginary = np.max(np.abs(np.diagonal(covmean).imag))
        if imaginary > 1e-3:
            raise ValueError(f"sqrtm(S1 S2) has an imaginary component of {imaginary:.3g}")
        covmean = covmean.real

    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def frechet_distance_from_features(
    features: torch.Tensor, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """The Fréchet distance of ``(N, D)`` features to ``(mu2, sigma2)``, exact and fast when
    N < D (every test, small validation sets).

    With S1 = B^T B, B = (X - mu1) / sqrt(N - 1) of shape (N, D), the non-zero eigenvalues of
    S1 S2 are those of the symmetric (N, N) matrix B S2 B^T, so Tr sqrtm(S1 S2) is the sum of
    the square roots of its eigenvalues: no D x D matrix root is needed.
    """
    x = features.detach().cpu().double().numpy()  # (N, D)
    n = x.shape[0]
    if n >= x.shape[1]:
        stats = FIDStatistics.from_features(features)
        return frechet_distance(stats.mu, stats.sigma, mu2, sigma2)
    mu1 = x.mean(axis=0)
    b = (x - mu1) / np.sqrt(n - 1)  # (N, D)
    small = b @ np.asarray(sigma2, dtype=np.float64) @ b.T  # (N, N), symmetric PSD
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((small + small.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + (b * b).sum() + np.trace(sigma2) - 2.0 * trace_root)


def inception_score(
    logits: torch.Tensor, splits: int = 10, shuffle: bool = True, seed: int = 2020
) -> tuple[float, float]:
    """Mean and std over ``splits`` chunks of exp(E_x KL(p(y|x) || p(y))), as torch-fidelity.

    The rows are shuffled with numpy's ``RandomState(seed)`` first (same permutation as
    torch-fidelity) so that chunks do not follow class-sorted dataset order.
    """
    n = logits.shape[0]
    if n < splits:
        raise ValueError(f"Inception Score with {splits} splits needs >= {splits} images, got {n}")
    x = logits.detach().cpu().double()  # (N, K)
    if shuffle:
        x = x[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
    p, log_p = x.softmax(dim=1), x.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        chunk = slice(i * n // splits, (i + 1) * n // splits)
        p_y = p[chunk].mean(dim=0, keepdim=True)  # (1, K) marginal of the chunk
        kl = (p[chunk] * (log_p[chunk] - p_y.log())).sum(dim=1)  # (n_chunk,)
        scores.append(kl.mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores))


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int, coef0: float) -> float:
    """Unbiased MMD^2 of two equal-size samples ``(m, D)`` under k(a, b) = (a.b/D + c)^d."""
    m, dim = x.shape
    k_xx = (x @ x.T / dim + coef0) ** degree  # (m, m)
    k_yy = (y @ y.T / dim + coef0) ** degree
    k_xy = (x @ y.T / dim + coef0) ** degree
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    features1: torch.Tensor,
    features2: torch.Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    coef0: float = 1.0,
    seed: int = 2020,
) -> tuple[float, float]:
    """Mean and std of the unbiased polynomial-kernel MMD^2 over random subsets.

    torch-fidelity's defaults and sampling order (one ``RandomState(seed)``, each subset drawn
    without replacement from set 1, then from set 2); ``subset_size`` is capped to the size
    of the smaller set so small evaluation sets work without extra options.
    """
    x = features1.detach().cpu().double().numpy()  # (N1, D)
    y = features2.detach().cpu().double().numpy()  # (N2, D)
    size = min(subset_size, x.shape[0], y.shape[0])
    if size < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        xs = x[rng.choice(x.shape[0], size, replace=False)]
        ys = y[rng.choice(y.shape[0], size, replace=False)]
        mmds[i] = _polynomial_mmd2(xs, ys, degree, coef0)
    return float(mmds.mean()), float(mmds.std())


def compute_fidelity(
    generated: Mapping[str, torch.Tensor],
    reference: Mapping[str, torch.Tensor] | FIDStatistics,
    *,
    reference_name: str,
    isc_splits: int = 10,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 2020,
) -> dict[str, float | str]:
    """FID, IS and KID of ``generated`` rows (``features`` and ``logits``) against a reference.

    ``reference`` is either gathered rows of real images (then KID is computed too) or cached
    ``FIDStatistics`` (then KID, which needs the samples themselves, is left out). IS
    describes the generated images alone. Keys: ``fid``, ``isc_mean``, ``isc_std``,
    ``kid_mean``, ``kid_std``, ``reference``.
    """
    fake = generated[FEATURES]
    if isinstance(reference, FIDStatistics):
        real_stats, real = reference, None
    else:
        real = reference[FEATURES]
        real_stats = FIDStatistics.from_features(real)

    results: dict[str, float | str] = {
        "fid": frechet_distance_from_features(fake, real_stats.mu, real_stats.sigma)
    }
    results["isc_mean"], results["isc_std"] = inception_score(
        generated[LOGITS], splits=isc_splits, seed=seed
    )
    if real is not None:
        results["kid_mean"], results["kid_std"] = kernel_inception_distance(
            fake, real, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed
        )
    results["reference"] = reference_name
    return results
