"""Codebook summaries against hand-computed histograms, and the metrics JSON record."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vq.train.metrics import (
    CodebookHistogram,
    codebook_metrics,
    read_metrics_json,
    write_metrics_json,
)


def test_codebook_metrics_hand_computed():
    histogram = CodebookHistogram(8)
    histogram.update(torch.tensor([[3, 3, 3, 3], [5, 5, 1, 3]]))  # counts: 1x1, 5x3, 2x5
    histogram.update(torch.tensor([1, 1]))  # counts: 3x1, 5x3, 2x5 (10 tokens)
    p = np.array([3, 5, 2]) / 10
    entropy = -(p * np.log(p)).sum()
    metrics = codebook_metrics(histogram)
    assert set(metrics) == {"codebook_usage", "codebook_entropy", "codebook_perplexity"}
    assert metrics["codebook_usage"] == 3 / 8
    assert metrics["codebook_entropy"] == pytest.approx(entropy, rel=1e-6)
    assert metrics["codebook_perplexity"] == pytest.approx(math.exp(entropy), rel=1e-6)


def test_uniform_codebook_reaches_the_maxima():
    histogram = CodebookHistogram(16)
    histogram.update(torch.arange(16).repeat(3))
    metrics = codebook_metrics(histogram)
    assert metrics["codebook_usage"] == 1.0
    assert metrics["codebook_entropy"] == pytest.approx(math.log(16), rel=1e-6)
    assert metrics["codebook_perplexity"] == pytest.approx(16, rel=1e-5)


def test_write_metrics_json(tmp_path):
    path = tmp_path / "val" / "iter_100" / "metrics.json"
    metrics = {
        "psnr": torch.tensor(19.97, dtype=torch.float64),
        "ssim": np.float32(0.5),
        "fid": 4.98,
        "psnr_of_identical": float("inf"),
        "per_split": [1.0, float("nan")],
    }
    written = write_metrics_json(
        path,
        metrics,
        checkpoint="work_dirs/run/checkpoints/iter_100",
        iteration=100,
        reference="imagenet_val",
        image_count=50_000,
        preprocessing={"resize": 256, "center_crop": 256},
    )
    assert written == path
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temporary left
    json.loads(path.read_text(), parse_constant=pytest.fail)  # strict JSON: no Infinity/NaN
    record = read_metrics_json(path)
    assert record["checkpoint"] == "work_dirs/run/checkpoints/iter_100"
    assert record["iteration"] == 100 and record["image_count"] == 50_000
    assert record["reference"] == "imagenet_val"
    assert record["preprocessing"] == {"resize": 256, "center_crop": 256}
    assert record["metrics"]["psnr"] == pytest.approx(19.97)
    assert record["metrics"]["ssim"] == 0.5
    assert record["metrics"]["psnr_of_identical"] is None
    assert record["metrics"]["per_split"] == [1.0, None]
