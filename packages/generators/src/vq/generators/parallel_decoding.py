"""Iterative parallel decoding of a masked network (MaskGIT / MAGE sampling).

The grid starts fully masked. Step t = 1..T runs the network once on the current grid,
draws a code for every masked cell (temperature, top-k, top-p of ``sampling``), scores
each draw by its confidence and keeps the most confident ones, re-masking the rest. The
number of cells still masked after step t follows the cosine schedule of training::

    remaining(t) = floor(N * cos(pi/2 * t/T)),   0 after step T

lowered where needed so that every step reveals at least one cell (``reveal_schedule``).
A revealed cell is fixed: later steps never change it.

Confidence is the drawn code's log-probability under the (guided) model distribution,
before temperature and filters, so it measures the model, not the sampling knobs, and is
defined for greedy decoding too; plus ``choice_temperature * (1 - t/T)`` times Gumbel noise
(MAGE's 4.5), which randomises the order in which cells are revealed, most at the first
steps and not at all at the last.

Classifier-free guidance is that of ``sampling.generate``: the batch is doubled as
[conditional; null class], logits mixed as ``u + s * (c - u)``, the scale constant or
ramped linearly from 1 at the first decoding step to ``guidance_scale`` at the last
(``sampling.guidance_at`` over steps instead of tokens).

Random numbers per step: one uniform per cell for the draw (none when greedy), then one
per cell for the Gumbel noise (none when its scale is 0), all from the caller's generator;
with one generator per sample (``sampling.Generators``) a sample's grid does not depend on
the batch it is drawn in.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from vq.generators.masking import MaskedTokenNetwork
from vq.generators.sampling import Generators, guidance_at, sample_from_logits, uniforms


def reveal_schedule(num_tokens: int, num_steps: int) -> list[int]:
    """Cells still masked after each step 1..T: floor(N cos(pi/2 t/T)), at least one fewer
    than the step before (never below 0), and 0 after the last step.

    With more steps than cells the grid is complete before step T; the decoder skips the
    steps that have nothing left to reveal.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    remaining, masked = [], num_tokens
    for step in range(1, num_steps):
        cosine = math.floor(num_tokens * math.cos(math.pi / 2 * step / num_steps))
        masked = max(min(cosine, masked - 1), 0)
        remaining.append(masked)
    return [*remaining, 0]


def gumbel_noise(shape: tuple[int, ...], generator: Generators, device: torch.device) -> Tensor:
    """Standard Gumbel samples -log(-log(u)) of ``shape`` (B, ...), per-sample generators
    filling one row each."""
    u = uniforms(shape, generator, device).clamp_(min=torch.finfo(torch.float32).tiny)
    return -torch.log(-torch.log(u))


@torch.no_grad()
def parallel_decode(
    model: MaskedTokenNetwork,
    classes: Tensor,
    *,
    num_steps: int = 12,
    guidance_scale: float = 1.75,
    guidance_interval: tuple[float, float] | None = None,
    guidance_schedule: Literal["constant", "linear"] = "constant",
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    choice_temperature: float = 4.5,
    generator: Generators = None,
) -> Tensor:
    """Sample image-token grids for ``classes`` (B,); returns (B, h, w) in [0, codebook_size).

    guidance_scale 1.0 turns guidance off (no doubled batch). ``guidance_interval`` = (lo, hi)
    fractions of the steps: guidance only for lo <= (t - 1)/T < hi. temperature 0 draws the
    most likely code (greedy), and choice_temperature 0 reveals cells strictly by
    confidence: both 0 make decoding deterministic without a generator. The model runs in
    eval mode (dropout off) and gets its previous mode back.
    """
    h, w = model.grid
    num_tokens, B = h * w, classes.shape[0]
    guided = guidance_scale != 1.0
    rows = torch.cat((classes, torch.full_like(classes, model.null_id))) if guided else classes
    tokens = torch.full((B, num_tokens), model.mask_id, dtype=torch.long, device=classes.device)
    masked = torch.ones((B, num_tokens), dtype=torch.bool, device=classes.device)
    num_masked = num_tokens

    was_training = model.training
    model.eval()
    try:
        for step, remaining in enumerate(reveal_schedule(num_tokens, num_steps), start=1):
            if remaining == num_masked:
                continue  # more steps than cells: the grid is already complete
            logits = model(rows, tokens.repeat(2, 1) if guided else tokens).float()  # (., N, K)
            if guided:
                cond, uncond = logits.chunk(2)
                scale = guidance_at(
                    step - 1, num_steps, guidance_scale, guidance_interval, guidance_schedule
                )
                logits = cond if scale == 1.0 else uncond + scale * (cond - uncond)
            drawn = sample_from_logits(
                logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
            )  # (B, N)
            confidence = logits.log_softmax(dim=-1).gather(-1, drawn[..., None]).squeeze(-1)
            noise_scale = choice_temperature * (1.0 - step / num_steps)
            if noise_scale > 0.0:
                confidence = confidence + noise_scale * gumbel_noise(
                    (B, num_tokens), generator, classes.device
                )
            lowest = torch.finfo(confidence.dtype).min  # a masked cell always outranks a fixed one
            confidence = confidence.nan_to_num(neginf=lowest).masked_fill(~masked, float("-inf"))
            reveal = confidence.topk(num_masked - remaining, dim=1).indices  # (B, revealed)
            tokens.scatter_(1, reveal, drawn.gather(1, reveal))
            masked.scatter_(1, reveal, False)
            num_masked = remaining
    finally:
        model.train(was_training)
    return tokens.view(B, h, w)
