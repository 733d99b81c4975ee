"""Evaluation metrics: reconstruction quality, generation fidelity and codebook use.

* ``image``: per-image L1, MSE, PSNR and SSIM (scikit-image's definitions) on [0, 1] images.
* ``inception``: torch-fidelity's Inception-v3 feature extractor from a local weights file.
* ``fid``: the cross-rank gathering of Inception features without sampler duplicates,
  cached reference statistics, and FID / IS / KID as torch-fidelity defines them.
* ``codebook``: usage, entropy and perplexity of the code histogram of a whole set.
* ``results``: the JSON record of one evaluation.

``inception`` imports torch-fidelity lazily, so importing this package stays cheap.
"""

from vq.train.metrics.codebook import CodebookHistogram, codebook_metrics
from vq.train.metrics.fid import (
    FeatureAccumulator,
    FIDStatistics,
    compute_fidelity,
    fid_statistics_path,
    frechet_distance,
    frechet_distance_from_features,
    inception_score,
    kernel_inception_distance,
)
from vq.train.metrics.image import l1, mse, psnr, reconstruction_metrics, ssim, to_unit_range
from vq.train.metrics.inception import InceptionFeatures
from vq.train.metrics.results import read_metrics_json, write_metrics_json

__all__ = [
    "CodebookHistogram",
    "FIDStatistics",
    "FeatureAccumulator",
    "InceptionFeatures",
    "codebook_metrics",
    "compute_fidelity",
    "fid_statistics_path",
    "frechet_distance",
    "frechet_distance_from_features",
    "inception_score",
    "kernel_inception_distance",
    "l1",
    "mse",
    "psnr",
    "read_metrics_json",
    "reconstruction_metrics",
    "ssim",
    "to_unit_range",
    "write_metrics_json",
]
