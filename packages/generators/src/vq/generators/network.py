"""The interface every proposal network offers to sequence code and samplers.

Both architectures (``llama.py``, ``gpt2.py``) map token ids to next-token logits and can
decode incrementally with a :class:`~vq.generators.kv_cache.KVCache`; the sampler and the
trainers see only this protocol, never the architecture.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from vq.generators.kv_cache import KVCache


@runtime_checkable
class ProposalNetwork(Protocol):
    vocab_size: int
    max_seq_len: int
    training: bool

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def __call__(
        self, tokens: Tensor, cache: KVCache | None = None, start: int | Tensor = 0
    ) -> Tensor:
        """tokens (B, T) at positions [start, start + T) -> logits (B, T, vocab_size);
        a 0-d tensor ``start`` keeps shapes fixed for the compiled step (``kv_cache``)."""
        ...

    def make_cache(
        self, batch_size: int, max_len: int, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty cache for ``batch_size`` sequences of up to ``max_len`` positions."""
        ...
