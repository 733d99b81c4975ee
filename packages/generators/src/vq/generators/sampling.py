"""Sampling image-token grids from a class-conditional proposal network.

``generate`` runs the autoregressive loop: the class token, then one image token per step,
each drawn from the last position's logits restricted to the image-token range. With
classifier-free guidance the batch is doubled as [conditional; null class], the logits are
mixed as ``u + s * (c - u)`` and the token drawn from the mix is appended to both halves.

Random numbers are drawn in exactly one way: one uniform per sample and step, from the
caller's generator, turned into a token by inverting the cumulative distribution. The
cached path (feed one token, reuse keys and values) and the uncached path (recompute the
whole prefix) therefore consume the same numbers in the same order, and their tokens agree
whenever their logits agree; in fp32 they differ by rounding only (~1e-6), which changes a
token only if a uniform falls within that distance of a bucket edge (tested: equal tokens).

Speed: a cached step reads every weight once for a few rows, so it is bound by memory
reads. Storing the network in bf16/fp16 (``model.to(dtype)``, the cache follows) halves
them; logits are cast to fp32 before guidance and sampling in every dtype. ``static_shapes``
feeds the one-token step its position as a 0-d tensor, so every step has the same shapes
(``kv_cache``), and ``compile`` runs that step through ``torch.compile`` (CUDA graphs on
CUDA): one graph for all 256 positions instead of 256 Python-dispatched forwards.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Literal, TypeAlias

import torch
from torch import Tensor

from vq.generators.kv_cache import KVCache
from vq.generators.network import ProposalNetwork
from vq.generators.sequence import SequenceLayout

Step: TypeAlias = Callable[[ProposalNetwork, Tensor, KVCache, Tensor], Tensor]

Generators: TypeAlias = torch.Generator | Sequence[torch.Generator] | None
"""Where random numbers come from: the global RNG (None), one generator for the whole batch,
or one generator per sample (row b of every draw comes from generators[b]; see
``vq.core.seeding.seeded_generator``). Per-sample
generators make a sample independent of the batch it is drawn in, so results do not depend
on the batch size or the number of processes."""


def uniforms(shape: tuple[int, ...], generator: Generators, device: torch.device) -> Tensor:
    """U[0, 1) numbers of ``shape`` (B, ...); per-sample generators fill one row each."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(shape, generator=generator, device=device)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for {shape[0]} samples")
    return torch.cat([torch.rand((1, *shape[1:]), generator=g, device=device) for g in generator])


def top_k_filter(logits: Tensor, k: int | None) -> Tensor:
    """Keep the ``k`` largest logits of each row (ties with the k-th are kept), -inf the rest."""
    if k is None or k >= logits.shape[-1]:
        return logits
    if k < 1:
        raise ValueError(f"top_k must be at least 1, got {k}")
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float | None) -> Tensor:
    """Nucleus filtering: keep the fewest most likely tokens whose probability reaches ``p``.

    A token is removed when the tokens ranked above it already hold probability >= p, so
    the token that crosses ``p`` stays and at least one token always survives (the rule of
    HF's ``TopPLogitsWarper`` that the reference used).
    """
    if p is None or p >= 1.0:
        return logits
    if p <= 0.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_above = probs.cumsum(dim=-1) - probs  # probability of strictly higher-ranked tokens
    remove_sorted = mass_above >= p
    remove = remove_sorted.scatter(-1, order, remove_sorted)  # back to vocabulary order
    return logits.masked_fill(remove, float("-inf"))


def sample_from_logits(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: Generators = None,
) -> Tensor:
    """logits (B, ..., V) -> token ids (B, ...); temperature 0 is greedy (argmax, no random
    numbers).

    Draws one uniform per distribution and returns the first id whose cumulative
    probability exceeds it (inverse-CDF sampling): a filtered id (probability 0) can never
    be returned.
    """
    logits = logits.float()
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    logits = top_p_filter(top_k_filter(logits / temperature, top_k), top_p)
    cdf = logits.softmax(dim=-1).cumsum(dim=-1)  # (B, ..., V)
    u = uniforms((*logits.shape[:-1], 1), generator, logits.device)  # (B, ..., 1)
    ids = torch.searchsorted(cdf, u * cdf[..., -1:], right=True)  # (B, ..., 1)
    return ids.squeeze(-1).clamp_(max=logits.shape[-1] - 1)


@torch.no_grad()
def sampled_token_accuracy(
    logits: Tensor,
    tokens: Tensor,
    layout: SequenceLayout,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: Generators = None,
    per_sample: bool = False,
) -> Tensor:
    """The reference's AR ``accuracy``: every image token is drawn from its teacher-forced
    logits (B, T, V) with the sampler's settings and compared with the target in ``tokens``
    (B, T). Batch mean, or (B,) with ``per_sample``; conditional logits only."""
    guess = sample_from_logits(
        layout.predictions(logits),
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=generator,
    )  # (B, T-1)
    hits = (guess == layout.targets(tokens)).float()
    return hits.mean(dim=1) if per_sample else hits.mean()


def guidance_at(
    step: int,
    num_steps: int,
    scale: float,
    interval: tuple[float, float] | None = None,
    schedule: Literal["constant", "linear"] = "constant",
) -> float:
    """Guidance scale of image token ``step`` (0-based) out of ``num_steps``.

    ``interval`` = (lo, hi) fractions of the grid: guidance only for lo <= step/num_steps < hi
    (1.0 elsewhere). ``linear`` ramps from 1.0 at the first token to ``scale`` at the last.
    """
    if interval is not None and not interval[0] <= step / num_steps < interval[1]:
        return 1.0
    if schedule == "linear":
        return 1.0 + (scale - 1.0) * step / max(num_steps - 1, 1)
    return scale


def one_token_step(
    model: ProposalNetwork, token: Tensor, cache: KVCache, position: Tensor
) -> Tensor:
    """token (B, 1) at ``position`` (0-d long tensor) -> next-token logits (B, V).

    The shapes do not depend on the position, so a compiled step is one graph."""
    return model(token, cache, position)[:, -1]


_COMPILED_STEPS: dict[str | None, Step] = {}


def compiled_step(device: torch.device) -> Step:
    """``one_token_step`` through ``torch.compile``, made once per mode: CUDA graphs
    (``reduce-overhead``) on CUDA, the default mode elsewhere."""
    mode = "reduce-overhead" if device.type == "cuda" else None
    if mode not in _COMPILED_STEPS:
        _COMPILED_STEPS[mode] = torch.compile(one_token_step, mode=mode, dynamic=False)
    return _COMPILED_STEPS[mode]


_GRAPH_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def graph_cache(model: ProposalNetwork, rows: int, length: int) -> KVCache:
    """The KV cache a CUDA-graphed step of ``model`` uses for ``rows`` x ``length``: made
    once and reused by every later call, so the graph recorded over its addresses (marked
    static) is replayed instead of re-recorded. Reuse is safe: a step reads only positions
    that this call has written (``kv_cache``'s mask)."""
    caches = _GRAPH_CACHES.setdefault(model, {})
    probe = model.make_cache(1, 1).keys[0]  # the dtype and device the model has now
    key = (rows, length, probe.dtype, probe.device)
    if key not in caches:
        caches[key] = model.make_cache(rows, length)
        for tensor in caches[key].tensors():
            torch._dynamo.mark_static_address(tensor)
    return caches[key]


@torch.no_grad()
def generate(
    model: ProposalNetwork,
    classes: Tensor,
    grid: tuple[int, int],
    codebook_size: int,
    num_classes: int,
    *,
    guidance_scale: float = 1.75,
    guidance_interval: tuple[float, float] | None = None,
    guidance_schedule: Literal["constant", "linear"] = "constant",
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: Generators = None,
    use_cache: bool = True,
    prompt: Tensor | None = None,
    static_shapes: bool = False,
    compile: bool = False,
) -> Tensor:
    """Sample image-token grids for ``classes`` (B,); returns (B, h, w) in [0, codebook_size).

    guidance_scale 1.0 turns guidance off (no doubled batch); any other value needs a model
    whose vocabulary has the null class. ``prompt`` (B, n) fixes the first n image tokens in
    raster order (the reference's "half generated" images). ``generator`` may be one
    generator per sample (``Generators``). ``use_cache=False`` recomputes
    the full prefix every step: slower, same tokens (module docstring). ``static_shapes``
    runs the cached one-token steps with fixed shapes (``one_token_step``), ``compile``
    compiles that step (module docstring); both need the cache. The model runs in eval mode
    (dropout off) and gets its previous mode back.
    """
    if (static_shapes or compile) and not use_cache:
        raise ValueError("static_shapes and compile need use_cache=True")
    layout = SequenceLayout.from_vocab(model.vocab_size, codebook_size, num_classes)
    h, w = grid
    num_tokens = h * w
    B = classes.shape[0]
    guided = guidance_scale != 1.0
    rows = torch.cat((classes, torch.full_like(classes, layout.null_id))) if guided else classes
    copies = 2 if guided else 1

    seq = torch.zeros((copies * B, 1 + num_tokens), dtype=torch.long, device=classes.device)
    seq[:, 0] = rows
    num_prompt = 0 if prompt is None else prompt.shape[1]
    if prompt is not None:
        seq[:, 1 : 1 + num_prompt] = prompt.repeat(copies, 1) + layout.image_offset
    # The last token is never fed back, so positions [0, num_tokens) are all a cache holds.
    step_fn: Step = one_token_step
    if compile and classes.device.type == "cuda":
        cache = graph_cache(model, copies * B, num_tokens)
    else:
        cache = model.make_cache(copies * B, num_tokens) if use_cache else None
    if compile:
        step_fn = compiled_step(classes.device)
    position = torch.zeros((), dtype=torch.long, device=classes.device)

    was_training = model.training
    model.eval()
    try:
        cached = 0  # positions [0, cached) already hold keys/values
        for step in range(num_prompt, num_tokens):
            end = 1 + step  # the prefix [0, end) predicts position `end`
            if cache is not None and (static_shapes or compile) and end - cached == 1:
                if compile and classes.device.type == "cuda":
                    torch.compiler.cudagraph_mark_step_begin()
                position.fill_(cached)
                logits = step_fn(model, seq[:, cached:end], cache, position)  # (copies*B, V)
                cached = end
            elif cache is not None:
                logits = model(seq[:, cached:end], cache, cached)[:, -1]  # (copies*B, V)
                cached = end
            else:
                logits = model(seq[:, :end])[:, -1]
            logits = layout.image_logits(logits).float()  # (copies*B, codebook_size)
            if guided:
                cond, uncond = logits.chunk(2)
                scale = guidance_at(
                    step, num_tokens, guidance_scale, guidance_interval, guidance_schedule
                )
                logits = cond if scale == 1.0 else uncond + scale * (cond - uncond)
            token = sample_from_logits(
                logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
            )  # (B,)
            seq[:, end] = token.repeat(copies) + layout.image_offset
    finally:
        model.train(was_training)
    return (seq[:B, 1:] - layout.image_offset).view(B, h, w)
