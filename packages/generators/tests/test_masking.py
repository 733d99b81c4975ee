"""The MaskGIT objective: cosine mask ratios and counts, random masks, loss and accuracy."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from vq.core.seeding import seeded_generator
from vq.generators.masking import (
    cosine_mask_ratio,
    mask_batch,
    masked_counts,
    masked_token_accuracy,
    masked_token_loss,
    random_mask,
)


def test_cosine_ratio_and_counts_by_hand() -> None:
    u = torch.tensor([0.0, 1 / 3, 0.5, 0.9, 0.99, 1.0])
    ratio = cosine_mask_ratio(u)
    expected = [1.0, math.sqrt(3) / 2, math.sqrt(0.5), 0.156434, 0.015707, 0.0]
    torch.testing.assert_close(ratio, torch.tensor(expected), atol=1e-6, rtol=0)
    # 16 cells: ceil(16 r) = 16, ceil(13.86), ceil(11.31), ceil(2.50), ceil(0.25), clamped 1
    assert masked_counts(ratio, 16).tolist() == [16, 14, 12, 3, 1, 1]
    assert masked_counts(torch.tensor([0.0, 1.0]), 5).tolist() == [1, 5]  # never 0 or > N


def test_random_mask_masks_the_lowest_scored_cells_of_the_counted_number() -> None:
    mask = random_mask(
        6, 16, generator=torch.Generator().manual_seed(3), device=torch.device("cpu")
    )
    replay = torch.Generator().manual_seed(3)  # the documented draws: ratios, then scores
    counts = masked_counts(cosine_mask_ratio(torch.rand(6, generator=replay)), 16)
    scores = torch.rand(6, 16, generator=replay)
    for row, count, score in zip(mask, counts, scores):
        assert row.sum() == count
        assert set(row.nonzero().flatten().tolist()) == set(
            (-score).topk(int(count)).indices.tolist()
        )
    again = random_mask(
        6, 16, generator=torch.Generator().manual_seed(3), device=torch.device("cpu")
    )
    assert torch.equal(mask, again)


def test_random_mask_is_uniform_over_cells_with_the_schedule_mean() -> None:
    n, batch = 16, 40_000
    mask = random_mask(
        batch, n, generator=torch.Generator().manual_seed(0), device=torch.device("cpu")
    )
    per_cell = mask.float().mean(dim=0)  # (16,)
    # E[ceil(16 cos(pi/2 u))] / 16 by a fine midpoint rule
    u = (torch.arange(100_000, dtype=torch.float64) + 0.5) / 100_000
    expected = torch.ceil(n * torch.cos(math.pi / 2 * u)).clamp(1, n).mean().item() / n
    assert per_cell.mean().item() == pytest.approx(expected, abs=0.005)
    assert (per_cell - expected).abs().max().item() < 0.015  # every cell equally likely


def test_per_sample_generators_make_masks_independent_of_the_batch() -> None:
    def run(rows: list[int]) -> torch.Tensor:
        generators = [seeded_generator("cpu", 5, r) for r in rows]
        return random_mask(len(rows), 16, generator=generators, device=torch.device("cpu"))

    together = run([0, 1, 2, 3])
    assert torch.equal(together[[3, 1]], run([3, 1]))
    assert not torch.equal(together[0], together[1])


def test_mask_batch_replaces_masked_cells_and_drops_labels_to_null() -> None:
    grids = torch.randint(0, 8, (500, 2, 3), generator=torch.Generator().manual_seed(1))
    classes = torch.randint(0, 4, (500,), generator=torch.Generator().manual_seed(2))
    batch = mask_batch(classes, grids, mask_id=8, null_id=4, label_dropout=0.1,
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(batch.targets, grids.flatten(1))
    assert torch.equal(batch.inputs[batch.mask], torch.full_like(batch.inputs[batch.mask], 8))
    assert torch.equal(batch.inputs[~batch.mask], batch.targets[~batch.mask])
    assert batch.mask.sum(dim=1).min() >= 1
    dropped = batch.classes == 4
    assert 0.05 < dropped.float().mean().item() < 0.15
    assert torch.equal(batch.classes[~dropped], classes[~dropped])
    again = mask_batch(classes, grids, 8, 4, 0.1, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(vars(batch).values(), vars(again).values()))
    plain = mask_batch(classes, grids, 8, 4, 0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain.classes, classes) and torch.equal(plain.mask, batch.mask)


def test_loss_is_cross_entropy_over_masked_cells_only() -> None:
    logits = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[0, 4, 2, 1], [3, 3, 0, 2]])
    mask = torch.tensor([[True, False, True, False], [False, False, False, True]])
    logits[~mask] = 1e4 * torch.randn(5)  # garbage at visible cells must not matter
    nll = -F.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)  # (2, 4)
    expected = (nll[0, 0] + nll[0, 2] + nll[1, 3]) / 3  # mean over the 3 masked cells
    torch.testing.assert_close(masked_token_loss(logits, targets, mask), expected)
    per_sample = masked_token_loss(logits, targets, mask, per_sample=True)
    torch.testing.assert_close(per_sample, torch.stack([(nll[0, 0] + nll[0, 2]) / 2, nll[1, 3]]))
    zeros = masked_token_loss(torch.zeros(2, 4, 5), targets, mask)
    assert zeros.item() == pytest.approx(math.log(5))


def test_label_smoothing_mixes_the_target_with_the_uniform_distribution() -> None:
    logits = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([[2, 0, 3]])
    mask = torch.tensor([[True, True, False]])
    log_p = F.log_softmax(logits, dim=-1)  # (1, 3, 4)
    eps = 0.1
    target = (1 - eps) * F.one_hot(targets, 4) + eps / 4  # (1, 3, 4)
    per_cell = -(target * log_p).sum(-1)  # (1, 3)
    smoothed = masked_token_loss(logits, targets, mask, label_smoothing=eps)
    torch.testing.assert_close(smoothed, per_cell[0, :2].mean())


def test_accuracy_counts_argmax_hits_at_masked_cells() -> None:
    targets = torch.tensor([[0, 1, 2, 3]])
    logits = F.one_hot(torch.tensor([[0, 0, 2, 0]]), 4).float()  # hits at cells 0 and 2
    mask = torch.tensor([[True, True, True, False]])  # cell 3 would miss but is visible
    accuracy = masked_token_accuracy(logits, targets, mask)
    assert accuracy.item() == pytest.approx(2 / 3)
    assert masked_token_accuracy(logits, targets, mask, per_sample=True).shape == (1,)
