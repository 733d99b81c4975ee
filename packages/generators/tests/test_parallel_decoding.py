"""Parallel decoding: the reveal schedule, fixed cells, confidence order, guidance, seeds,
and tiny MaskGIT networks trained to known grids."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from vq.core.seeding import seeded_generator
from vq.generators.maskgit import MaskGIT
from vq.generators.masking import mask_batch, masked_token_loss
from vq.generators.parallel_decoding import parallel_decode, reveal_schedule


class FixedLogits(nn.Module):
    """A masked network whose logits are a table per class id, (num_classes + 1, N, K)
    (the last row for the null class); it records the tokens and mode of every call."""

    def __init__(self, table: Tensor, grid: tuple[int, int]) -> None:
        super().__init__()
        self.table = table
        self.num_classes, _, self.codebook_size = table.shape[0] - 1, *table.shape[1:]
        self.mask_id, self.null_id, self.grid = self.codebook_size, self.num_classes, grid
        self.calls: list[tuple[Tensor, Tensor]] = []
        self.modes: list[bool] = []

    def forward(self, classes: Tensor, tokens: Tensor) -> Tensor:
        self.calls.append((classes.clone(), tokens.clone()))
        self.modes.append(self.training)
        return self.table[classes]  # (B, N, K)


def test_reveal_schedule_by_hand() -> None:
    # floor(256 cos(pi/2 t/12)) for t = 1..11: 253.8, 247.3, 236.5, 221.7, 203.1, 181.0, ...
    assert reveal_schedule(256, 12) == [253, 247, 236, 221, 203, 181, 155, 128, 97, 66, 33, 0]
    # 16 cells: floor gives 15, 15, 14, 13, 12, 11, 9, 8, 6, 4, 2; at least one per step
    assert reveal_schedule(16, 12) == [15, 14, 13, 12, 11, 10, 9, 8, 6, 4, 2, 0]
    assert reveal_schedule(4, 12) == [3, 2, 1] + [0] * 9  # more steps than cells
    assert reveal_schedule(7, 1) == [0]
    with pytest.raises(ValueError, match="num_steps"):
        reveal_schedule(4, 0)


def ramp_model() -> FixedLogits:
    """16 cells, 5 codes: cell p predicts code p % 5 with a peak growing with p, so the
    later a cell, the more confident its draw."""
    table = torch.zeros(3, 16, 5)  # 2 classes + null
    for p in range(16):
        table[:, p, p % 5] = 1.0 + 0.5 * p
    return FixedLogits(table, grid=(4, 4))


def test_greedy_reveals_the_most_confident_cells_in_schedule_counts() -> None:
    model = ramp_model().train()
    out = parallel_decode(model, torch.tensor([0, 1]), guidance_scale=1.0, temperature=0.0,
                          choice_temperature=0.0)  # fmt: skip
    assert torch.equal(out, (torch.arange(16) % 5).view(1, 4, 4).expand(2, 4, 4))
    masked_before = [16, *reveal_schedule(16, 12)[:-1]]
    assert len(model.calls) == 12
    for (_, tokens), masked in zip(model.calls, masked_before):
        assert (tokens == model.mask_id).sum(dim=1).tolist() == [masked, masked]
        # the most confident cells, the last ones, are revealed first
        assert (tokens[:, :masked] == model.mask_id).all()
        assert (tokens[:, masked:] != model.mask_id).all()
    assert model.modes == [False] * 12 and model.training  # eval inside, mode restored


def test_sampled_cells_stay_fixed_and_every_cell_is_filled() -> None:
    table = torch.randn(3, 16, 5, generator=torch.Generator().manual_seed(0))
    model = FixedLogits(table, grid=(4, 4))
    out = parallel_decode(model, torch.tensor([0, 1, 1]), num_steps=6, guidance_scale=1.0,
                          generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert out.shape == (3, 4, 4) and out.min() >= 0 and out.max() < 5
    steps = [tokens for _, tokens in model.calls] + [out.flatten(1)]
    for before, after in itertools.pairwise(steps):
        fixed = before != model.mask_id
        assert torch.equal(after[fixed], before[fixed])  # a revealed cell never changes
    masked_after = [(t == model.mask_id).sum(1).tolist() for t in steps[1:]]
    assert masked_after == [[m] * 3 for m in reveal_schedule(16, 6)]


def test_top_k_one_draws_the_argmax_whatever_the_temperature() -> None:
    table = torch.randn(3, 16, 5, generator=torch.Generator().manual_seed(0))
    model = FixedLogits(table, grid=(4, 4))
    out = parallel_decode(model, torch.tensor([0, 1]), guidance_scale=1.0, temperature=5.0,
                          top_k=1, generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(out.flatten(1), table[:2].argmax(-1))


def guidance_model() -> FixedLogits:
    """2 cells, 3 codes: the class prefers code 1 slightly, the null class strongly, so
    u + s (c - u) flips to code 0 for s = 2: [0, 1 + 2 (0.1 - 1), -5] = [0, -0.8, -5]."""
    table = torch.empty(2, 2, 3)  # class 0, null
    table[0] = torch.tensor([0.0, 0.1, -5.0])
    table[1] = torch.tensor([0.0, 1.0, -5.0])
    return FixedLogits(table, grid=(1, 2))


@pytest.mark.parametrize(
    ("scale", "schedule", "codes"),
    [(1.0, "constant", [1, 1]), (2.0, "constant", [0, 0]), (2.0, "linear", [0, 1])],
)
def test_guidance_mixes_logits_with_a_per_step_scale(
    scale: float, schedule: str, codes: list[int]
) -> None:
    model = guidance_model()
    out = parallel_decode(model, torch.tensor([0]), num_steps=2, guidance_scale=scale,
                          guidance_schedule=schedule, temperature=0.0, choice_temperature=0.0)  # fmt: skip
    assert sorted(out.flatten().tolist()) == codes  # linear: scale 1 at step 1, 2 at step 2
    classes = model.calls[0][0].tolist()
    assert classes == ([0] if scale == 1.0 else [0, model.null_id])


def random_network() -> MaskGIT:
    torch.manual_seed(0)
    model = MaskGIT.from_preset("tiny", codebook_size=16, num_classes=4, grid=(4, 4))
    nn.init.normal_(model.lm_head.weight, std=0.5)  # spread-out logits
    return model


@pytest.mark.parametrize("scale", [1.0, 1.75])
def test_seeded_decoding_is_deterministic_and_independent_of_the_batch(scale: float) -> None:
    model = random_network()
    classes = torch.tensor([0, 1, 2, 3, 1])

    def run(rows: list[int], seed: int = 0) -> Tensor:
        generators = [seeded_generator("cpu", seed, r) for r in rows]
        return parallel_decode(model, classes[rows], num_steps=4, guidance_scale=scale,
                               top_k=12, generator=generators)  # fmt: skip

    together = run([0, 1, 2, 3, 4])
    assert torch.equal(together, run([0, 1, 2, 3, 4]))
    assert torch.equal(together[[4, 2]], run([4, 2]))
    assert not torch.equal(together, run([0, 1, 2, 3, 4], seed=1))
    assert not torch.equal(together[1], together[4])  # same class, own random numbers
    assert len(torch.unique(together)) > 4


def train(
    model: MaskGIT, classes: Tensor, grids: Tensor, steps: int, label_dropout: float
) -> list[float]:
    """Adam on freshly masked batches of the given grids; the loss of every step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        batch = mask_batch(classes, grids, model.mask_id, model.null_id, label_dropout, generator=g)
        loss = masked_token_loss(model(batch.classes, batch.inputs), batch.targets, batch.mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.slow
def test_overfit_four_grids_then_decode_them() -> None:
    torch.manual_seed(0)
    grids = torch.randint(0, 16, (4, 4, 4))
    model = MaskGIT.from_preset("tiny", codebook_size=16, num_classes=4, grid=(4, 4))
    classes = torch.arange(4).repeat(4)  # each grid 4 times per batch: several masks a step
    losses = train(model, classes, grids.repeat(4, 1, 1), steps=120, label_dropout=0.0)
    assert losses[0] == pytest.approx(math.log(16), rel=0.05)
    assert sum(losses[-10:]) / 10 < 0.05
    greedy = parallel_decode(model, torch.arange(4), guidance_scale=1.0, temperature=0.0,
                             choice_temperature=0.0)  # fmt: skip
    assert torch.equal(greedy, grids)
    cold = parallel_decode(model, torch.arange(4), guidance_scale=1.0, temperature=0.1,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(cold, grids)


@pytest.mark.slow
def test_guidance_makes_the_class_tokens_dominate() -> None:
    """Class 0 -> grids of code 1, class 1 -> code 2, each cell replaced by noise (codes
    3..7) with probability 0.3. Guidance pushes away from the null class's mixture of both,
    so a sampled grid holds more of its class's code. One decoding step: every cell is drawn
    from the all-masked grid, where the null class knows nothing of the class (once cells are
    revealed they tell the class to the unconditional branch too, and guidance fades)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    classes = torch.arange(2).repeat(32)  # (64,)
    clean = (classes + 1)[:, None, None].expand(64, 4, 4)
    noise = torch.randint(3, 8, (64, 4, 4), generator=g)
    grids = torch.where(torch.rand(64, 4, 4, generator=g) < 0.3, noise, clean)
    model = MaskGIT.from_preset("tiny", codebook_size=8, num_classes=2, grid=(4, 4))
    losses = train(model, classes, grids, steps=150, label_dropout=0.3)
    assert sum(losses[-10:]) / 10 < 0.8 * losses[0]

    def share_of_class_code(scale: float) -> float:
        wanted = torch.arange(2).repeat(100)  # (200,)
        out = parallel_decode(model, wanted, num_steps=1, guidance_scale=scale,
                              generator=torch.Generator().manual_seed(2))  # fmt: skip
        return (out == (wanted + 1)[:, None, None]).float().mean().item()

    plain, guided = share_of_class_code(1.0), share_of_class_code(3.0)
    assert 0.5 < plain < 0.9  # roughly the data's 0.7
    assert guided > plain + 0.05  # 0.72 -> 0.83 on this CPU
