"""Rotary position embeddings of the LLaMA network: 1D over sequence positions, or LlamaGen's
2D over the rows and columns of the image-token grid.

Both kinds rotate pairs of query/key dimensions ``(i, i + head_dim/2)`` (Hugging Face's
rotate-half convention) by an angle per position and pair, so both reduce to one table of
cos and sin per position, ``(max_seq_len, head_dim)``, computed once. A step at positions
``[start, start + T)`` reads rows ``start .. start + T - 1``: a KV-cached decoding step is
rotated exactly like the same position of a full forward pass.

* ``1d``: the angle of pair i at position p is ``p * base^(-2i/head_dim)`` (LLaMA).
* ``2d`` (LlamaGen's ``precompute_freqs_cis_2d``): position 0 is the class token, position
  p >= 1 the grid cell p - 1 in raster order, ``(row, col) = divmod(p - 1, grid_width)``.
  The first head_dim/4 pairs turn with the row, the other head_dim/4 with the column, each
  axis at the frequencies ``base^(-4j/head_dim)``, j < head_dim/4. The class position gets
  LlamaGen's all-zero table, not the identity: its query and key are multiplied by zero.
  Its key therefore scores 0 against every query (a fixed attention sink) while its value
  is still read; reproducing that is what makes converted LlamaGen weights compute the
  same function.

LlamaGen rotates adjacent pairs ``(2i, 2i + 1)`` (complex-multiply style); the converter
(``vq.generators.convert_llamagen``) permutes the rows of each head's query and key
projections so that its pairs land on our ``(i, i + head_dim/2)`` pairs. Attention scores
are unchanged, because queries and keys are permuted alike.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def sequence_angles(head_dim: int, max_seq_len: int, base: float) -> Tensor:
    """(max_seq_len, head_dim // 2) angles of the 1D rotary embedding."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    return torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)


def grid_angles(head_dim: int, num_cells: int, base: float, grid_width: int) -> Tensor:
    """(num_cells, head_dim // 2) angles of grid cells 0 .. num_cells - 1 (raster order)."""
    if head_dim % 4:
        raise ValueError(
            f"2D rotary embeddings need a head dimension divisible by 4, got {head_dim}"
        )
    half = head_dim // 2
    # LlamaGen's exponents 2j / (head_dim / 2), j < head_dim / 4: the same float32 values.
    inv_freq = 1.0 / base ** (torch.arange(0, half, 2, dtype=torch.float32) / half)
    cell = torch.arange(num_cells)
    row = torch.div(cell, grid_width, rounding_mode="floor").float()  # (num_cells,)
    col = (cell % grid_width).float()
    return torch.cat((torch.outer(row, inv_freq), torch.outer(col, inv_freq)), dim=-1)


class RotaryEmbedding(nn.Module):
    """cos/sin tables of every position (non-persistent buffers: never in a state dict).

    ``grid_width`` None: 1D over positions; otherwise LlamaGen's 2D over a grid of that
    width, with position 0 the class token (module docstring).
    """

    def __init__(
        self, head_dim: int, max_seq_len: int, base: float, grid_width: int | None = None
    ) -> None:
        super().__init__()
        if grid_width is None:
            angles = sequence_angles(head_dim, max_seq_len, base)  # (max_seq_len, D/2)
            cos, sin = angles.cos(), angles.sin()
        else:
            if grid_width < 1:
                raise ValueError(f"grid_width must be at least 1, got {grid_width}")
            angles = grid_angles(head_dim, max_seq_len - 1, base, grid_width)  # (S - 1, D/2)
            zero = torch.zeros(1, head_dim // 2)  # the class position: LlamaGen's zero table
            cos, sin = torch.cat((zero, angles.cos())), torch.cat((zero, angles.sin()))
        self.register_buffer("cos", torch.cat((cos, cos), dim=-1), persistent=False)  # (S, D)
        self.register_buffer("sin", torch.cat((sin, sin), dim=-1), persistent=False)

    def forward(self, q: Tensor, k: Tensor, start: int | Tensor) -> tuple[Tensor, Tensor]:
        """Rotate q, k (B, heads, T, head_dim) by the angles of positions [start, start + T);
        a 0-d tensor ``start`` (the compiled step) gathers the rows without a host read."""
        if isinstance(start, Tensor):
            positions = start + torch.arange(q.shape[2], device=q.device)  # (T,)
            cos = self.cos.index_select(0, positions).to(q.dtype)  # (T, D)
            sin = self.sin.index_select(0, positions).to(q.dtype)
            return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        end = start + q.shape[2]
        if end > self.cos.shape[0]:
            raise ValueError(f"position {end - 1} exceeds max_seq_len {self.cos.shape[0]}")
        cos, sin = self.cos[start:end].to(q.dtype), self.sin[start:end].to(q.dtype)  # (T, D)
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
