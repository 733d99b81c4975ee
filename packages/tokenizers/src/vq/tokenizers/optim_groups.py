"""Weight-decay parameter groups for transformer training (VQ-KD's AdamW).

Decay is a prior on weight *matrices*; applied to biases, LayerNorm gains or learned
embeddings that act as offsets (cls token, position embeddings) it only pulls them
towards zero for no benefit. The reference lists the exempt VQ-KD parameters with regular
expressions; the rule here gives the same split (checked in the tests) and holds for any
model: a parameter is exempt when it has at most one dimension (biases, norms, q/v
biases) or its name ends in one of ``NO_DECAY_NAMES``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

# Multi-dimensional parameters that are nevertheless offsets, not linear maps.
NO_DECAY_NAMES = frozenset({"cls_token", "pos_embed"})


def split_decay(
    model: nn.Module, no_decay_names: Iterable[str] = NO_DECAY_NAMES
) -> tuple[dict[str, nn.Parameter], dict[str, nn.Parameter]]:
    """``(decay, no_decay)``: the trainable parameters of ``model`` by qualified name.

    Frozen parameters (``requires_grad=False``, e.g. a codebook updated by EMA) are in
    neither: they belong to no optimizer.
    """
    exempt = frozenset(no_decay_names)
    decay: dict[str, nn.Parameter] = {}
    no_decay: dict[str, nn.Parameter] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.rsplit(".", 1)[-1] in exempt:
            no_decay[name] = param
        else:
            decay[name] = param
    return decay, no_decay


def param_groups(
    model: nn.Module, weight_decay: float, no_decay_names: Iterable[str] = NO_DECAY_NAMES
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: ``weight_decay`` for weight matrices, 0 for the rest.

    Empty groups are left out, so the result can be passed to any ``torch.optim``
    optimizer as it is: ``AdamW(param_groups(model, 1e-4), lr=2e-4)``.
    """
    decay, no_decay = split_decay(model, no_decay_names)
    groups = [
        {"params": list(decay.values()), "weight_decay": weight_decay},
        {"params": list(no_decay.values()), "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]
