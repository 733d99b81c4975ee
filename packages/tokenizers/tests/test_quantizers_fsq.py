"""FSQ: the bounding formula, the index <-> code bijection, mixed radix order, STE."""

from __future__ import annotations

import math

import pytest
import torch

from vq.tokenizers.quantizers import FSQ, FSQConfig, build_quantizer, fsq_levels


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: a second intra-op thread only adds synchronisation latency."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def reference_level(x: float, levels: int) -> int:
    """The integer level of x on a channel with ``levels`` levels, in plain Python (§3.4)."""
    m = (levels - 1) * (1 - 1e-3)
    o = (levels - 1) % 2
    return round((math.tanh(x + math.atanh(o / m)) * m - o) / 2)


def preimage(q: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """An input that rounds to the integer level ``q``: the inverse of the bound at q -+ 1/4.

    (The outermost levels themselves lie just outside the open range of the bound.)
    """
    m = (levels - 1) * (1 - 1e-3)
    o = (levels - 1) % 2
    target = q - 0.25 * torch.sign(q)
    return torch.atanh((2 * target + o) / m) - torch.atanh(o / m)


def test_known_values() -> None:
    fsq = FSQ(FSQConfig(levels=[8, 5]))
    z = torch.tensor([0.0, 0.5, 10.0, -10.0, -0.7])
    out = fsq(torch.stack([z, z]).reshape(1, 2, 1, 5))
    # L = 8: levels -4..3 -> codes q/4; L = 5: levels -2..2 -> codes q/2.
    expected_8 = [0.0, 0.25, 0.75, -1.0, -0.5]
    expected_5 = [0.0, 0.5, 1.0, -1.0, -0.5]
    torch.testing.assert_close(out.quantized[0, :, 0], torch.tensor([expected_8, expected_5]))
    for x, c8, c5 in zip(z.tolist(), expected_8, expected_5):
        assert reference_level(x, 8) / 4 == c8
        assert reference_level(x, 5) / 2 == c5
    # digits (q + 4, q + 2): (4, 2) -> 4 + 8*2 = 20, (5, 3) -> 29, (7, 4) -> 39, (0, 0) -> 0
    assert out.indices.tolist() == [[[20, 29, 39, 0, 2 + 8 * 1]]]
    assert out.losses == {}


def test_first_channel_is_least_significant() -> None:
    fsq = FSQ(FSQConfig(levels=[3, 4, 3]))
    codes = fsq.codes(torch.tensor([[[0, 1, 3, 12, 35]]]))[0, :, 0].t()  # (5, 3)
    # digit / (L // 2) - 1 with digits (id % 3, id // 3 % 4, id // 12)
    expected = [[-1, -1, -1], [0, -1, -1], [-1, -0.5, -1], [-1, -1, 0], [1, 0.5, 1]]
    torch.testing.assert_close(codes, torch.tensor(expected))


@pytest.mark.parametrize("levels", [[8, 8, 5, 5, 5], [3, 4, 7, 6], [5], [6, 3]])
def test_every_code_round_trips(levels: list[int]) -> None:
    fsq = FSQ(FSQConfig(levels=levels))
    k = math.prod(levels)
    ids = torch.arange(k).reshape(1, 1, k)  # (1, 1, K) as a (B, h, w) map
    codes = fsq.codes(ids)  # (1, D, 1, K)
    assert torch.unique(codes[0, :, 0].t(), dim=0).shape[0] == k  # a bijection
    assert codes.min() == -1
    assert codes.max() <= 1
    # The forward pass and ``indices`` map an input onto each code and id.
    level_t = fsq.levels.view(1, -1, 1, 1).double()
    half = torch.div(fsq.levels, 2, rounding_mode="floor").view(1, -1, 1, 1).double()
    z = preimage(codes.double() * half, level_t)
    assert torch.isfinite(z).all()
    out = fsq(z.float())
    assert torch.equal(out.indices, ids)
    assert torch.equal(fsq.indices(z.float()), ids)
    torch.testing.assert_close(out.quantized, codes)


@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_indices_of_raw_features_follow_the_bound(scale: float) -> None:
    """``indices`` bounds features as ``forward`` does: ids equal the plain-Python levels.

    Rounding raw features without the bound (what an earlier version did) agrees on only
    about a third of N(0, 2.5) features."""
    levels = [8, 8, 5, 5, 5]
    fsq = FSQ(FSQConfig(levels=levels))
    z = torch.randn(2, 5, 6, 6, generator=torch.Generator().manual_seed(0)) * scale
    expected = torch.zeros(2, 6, 6, dtype=torch.long)
    place = 1
    for channel, level in enumerate(levels):
        digits = [reference_level(x, level) + level // 2 for x in z[:, channel].flatten().tolist()]
        expected += torch.tensor(digits).reshape(2, 6, 6) * place
        place *= level
    assert torch.equal(fsq.indices(z), expected)
    assert torch.equal(fsq(z).indices, expected)


def test_straight_through_gradient() -> None:
    fsq = FSQ(FSQConfig(levels=[8, 5]))
    z = torch.randn(2, 2, 3, 3, requires_grad=True)
    fsq(z).quantized.sum().backward()
    levels = torch.tensor([8.0, 5.0]).view(1, 2, 1, 1)
    m, o = (levels - 1) * (1 - 1e-3), (levels - 1) % 2
    bound_grad = (1 - torch.tanh(z.detach() + torch.atanh(o / m)) ** 2) * m / 2
    torch.testing.assert_close(z.grad, bound_grad / torch.tensor([4.0, 2.0]).view(1, 2, 1, 1))


def test_bf16_input_and_autocast() -> None:
    fsq = FSQ(FSQConfig(levels=[8, 8, 5, 5, 5]))
    z = torch.randn(2, 5, 4, 4)
    reference = fsq(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(fsq(z).indices, reference.indices)
    out = fsq(z.bfloat16())
    assert out.quantized.dtype == torch.bfloat16


def test_levels_helper_and_validation() -> None:
    assert fsq_levels(8000) == [8, 8, 5, 5, 5]
    assert fsq_levels(64000) == [8, 8, 8, 5, 5, 5]
    fsq = build_quantizer(FSQConfig.for_codebook_size(64000))
    assert (fsq.num_codes, fsq.dim) == (64000, 6)
    with pytest.raises(ValueError, match="8000"):
        fsq_levels(1000)
    with pytest.raises(ValueError, match="at least 3"):
        FSQConfig(levels=[8, 2])
    with pytest.raises(ValueError, match=r"\(B, 2, h, w\)"):
        FSQ(FSQConfig(levels=[8, 5]))(torch.zeros(1, 3, 2, 2))
    assert fsq.state_dict() == {}  # nothing to learn, nothing to checkpoint
