"""A static key/value cache for autoregressive decoding.

Every layer owns two tensors of shape ``(B, heads, max_len, head_dim)`` allocated once,
before the first step. A step writes its new keys and values in place at positions
``[start, start + T)`` and attends over the written prefix ``[0, start + T)``: no tensor
is concatenated or re-allocated while sampling, so memory is known up front and the
per-step cost does not grow with reallocation (it grows only with the attended length).

``start`` is a Python int (the eager sampler) or a 0-d long tensor (the compiled one-token
step of ``vq.generators.sampling``). With a tensor position every step has the same shapes:
the new keys are written with ``index_copy_`` and the queries attend over all ``max_len``
positions with a mask hiding those not written yet, so one compiled graph (one CUDA graph)
serves every position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class KVCache:
    """Pre-allocated keys and values of every attention layer of one model."""

    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        num_heads: int,
        max_len: int,
        head_dim: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (batch_size, num_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.max_len = max_len

    @classmethod
    def for_model(
        cls,
        depth: int,
        heads: int,
        width: int,
        batch_size: int,
        max_len: int,
        *,
        like: Tensor,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """The cache of a ``depth``-layer transformer of ``width`` split into ``heads``, on
        the device of ``like`` (a weight of the model) and in its dtype unless given."""
        return cls(
            depth,
            batch_size,
            heads,
            max_len,
            width // heads,
            device=like.device,
            dtype=dtype or like.dtype,
        )

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    def tensors(self) -> list[Tensor]:
        """Every key and value tensor (to mark them as static addresses for CUDA graphs)."""
        return [*self.keys, *self.values]

    def update(
        self, layer: int, start: int | Tensor, k: Tensor, v: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Write ``k``, ``v`` (B, heads, T, head_dim) at ``start``; return the prefix views.

        The returned tensors are views (B, heads, start + T, head_dim) of the cache, so the
        attention that follows reads every key written so far without copying it. With a
        tensor ``start`` they are the whole cache (B, heads, max_len, head_dim): the caller
        masks the positions not written yet (``causal_attention``).
        """
        if isinstance(start, Tensor):
            positions = start + torch.arange(k.shape[2], device=k.device)  # (T,)
            self.keys[layer].index_copy_(2, positions, k)
            self.values[layer].index_copy_(2, positions, v)
            return self.keys[layer], self.values[layer]
        end = start + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions, step needs {end}")
        keys, values = self.keys[layer], self.values[layer]
        keys[:, :, start:end] = k
        values[:, :, start:end] = v
        return keys[:, :, :end], values[:, :, :end]


def causal_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    layer: int,
    cache: KVCache | None,
    start: int | Tensor,
    dropout_p: float = 0.0,
) -> Tensor:
    """Causal self-attention of T new queries at positions [start, start + T).

    q, k, v: (B, heads, T, head_dim) for the new positions only. With a cache, k and v are
    written into it and the queries attend over every cached position. Three cases:

    * no cache, or a cache prefilled from position 0: plain causal attention (T == S);
    * one new query: it sees every key written so far, no mask is needed;
    * several queries after a cached prefix: query i sees keys [0, start + i], an explicit
      mask (SDPA's ``is_causal`` aligns the triangle to the top left, which is wrong here);
    * a tensor ``start`` (fixed shapes): the same mask over the whole cache.

    Returns (B, heads, T, head_dim).
    """
    if cache is not None:
        k, v = cache.update(layer, start, k, v)  # (B, heads, S, head_dim), S = start + T
    elif isinstance(start, Tensor) or start != 0:
        raise ValueError("start > 0 needs a KV cache holding the earlier positions")
    T, S = q.shape[2], k.shape[2]
    if isinstance(start, Tensor):
        rows = start + torch.arange(T, device=q.device)[:, None]  # (T, 1) query positions
        cols = torch.arange(S, device=q.device)[None, :]  # (1, max_len) key positions
        return F.scaled_dot_product_attention(q, k, v, attn_mask=cols <= rows, dropout_p=dropout_p)
    if T == S:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    if T == 1:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    rows = torch.arange(start, start + T, device=q.device)[:, None]  # (T, 1) query positions
    cols = torch.arange(S, device=q.device)[None, :]  # (1, S) key positions
    return F.scaled_dot_product_attention(q, k, v, attn_mask=cols <= rows, dropout_p=dropout_p)
