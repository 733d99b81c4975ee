"""Sequence layout, label dropout, loss and accuracy."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from vq.generators.sequence import SequenceLayout, drop_labels, next_token_loss, token_accuracy


def test_layout_of_the_reference_vocabularies() -> None:
    guided = SequenceLayout(num_classes=1000, codebook_size=8192, null_class=True)
    assert (guided.vocab_size, guided.null_id, guided.image_offset) == (9193, 1000, 1001)
    plain = SequenceLayout(num_classes=1000, codebook_size=16384, null_class=False)
    assert (plain.vocab_size, plain.image_offset) == (17384, 1000)
    with pytest.raises(ValueError, match="no null class"):
        _ = plain.null_id
    assert SequenceLayout.from_vocab(17385, 16384, 1000).null_class
    assert not SequenceLayout.from_vocab(17384, 16384, 1000).null_class
    with pytest.raises(ValueError, match="does not fit"):
        SequenceLayout.from_vocab(17390, 16384, 1000)


def test_sequence_is_class_then_offset_tokens_row_major() -> None:
    layout = SequenceLayout(num_classes=10, codebook_size=8, null_class=True)
    grid = torch.tensor([[[0, 1], [2, 7]]])  # (1, 2, 2)
    seq = layout.sequence(torch.tensor([3]), grid)
    assert seq.tolist() == [[3, 11, 12, 13, 18]]


def test_label_dropout_rate_and_null_id() -> None:
    classes = torch.randint(0, 1000, (200_000,), generator=torch.Generator().manual_seed(0))
    dropped = drop_labels(classes, 0.1, null_id=1000, generator=torch.Generator().manual_seed(1))
    is_null = dropped == 1000
    assert is_null.float().mean().item() == pytest.approx(0.1, abs=0.003)  # ~5 sigma
    assert torch.equal(dropped[~is_null], classes[~is_null])
    again = drop_labels(classes, 0.1, null_id=1000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(dropped, again)
    assert drop_labels(classes, 0.0, null_id=1000) is classes


def test_loss_scores_image_positions_over_image_logits_only() -> None:
    layout = SequenceLayout(num_classes=3, codebook_size=5, null_class=True)  # vocab 9
    tokens = torch.tensor([[1, 4, 8, 6]])  # class 1, image tokens 0, 4, 2
    logits = torch.randn(1, 4, 9, generator=torch.Generator().manual_seed(0))
    logits[..., :4] = 50.0  # huge class logits must not matter
    expected = (
        sum(-F.log_softmax(logits[0, t, 4:], dim=-1)[tokens[0, t + 1] - 4] for t in range(3)) / 3
    )
    torch.testing.assert_close(next_token_loss(logits, tokens, layout), expected)
    assert next_token_loss(torch.zeros(1, 4, 9), tokens, layout).item() == pytest.approx(
        math.log(5)
    )


def test_token_accuracy_counts_argmax_hits() -> None:
    layout = SequenceLayout(num_classes=2, codebook_size=3, null_class=False)  # offset 2
    tokens = torch.tensor([[0, 2, 3, 4]])  # image tokens 0, 1, 2
    logits = torch.zeros(1, 4, 5)
    logits[0, 0, 2] = logits[0, 1, 3] = 5.0  # hits for tokens 0 and 1
    logits[0, 2, 2] = 5.0  # miss for token 2
    assert token_accuracy(logits, tokens, layout).item() == pytest.approx(2 / 3)
    both = torch.cat((logits, torch.zeros(1, 4, 5)))
    both[1, 0, 2] = 5.0  # the second sequence: one hit
    per_sample = token_accuracy(both, tokens.repeat(2, 1), layout, per_sample=True)
    torch.testing.assert_close(per_sample, torch.tensor([2 / 3, 1 / 3]))


def test_per_sample_loss_is_each_sequences_mean() -> None:
    layout = SequenceLayout(num_classes=2, codebook_size=3, null_class=True)  # offset 3
    tokens = torch.tensor([[0, 3, 4, 5], [1, 5, 5, 3]])
    logits = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(3))
    per_sample = next_token_loss(logits, tokens, layout, per_sample=True)
    for b in range(2):
        torch.testing.assert_close(
            per_sample[b], next_token_loss(logits[b : b + 1], tokens[b : b + 1], layout)
        )
    torch.testing.assert_close(per_sample.mean(), next_token_loss(logits, tokens, layout))
