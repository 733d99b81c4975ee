"""Data parallelism applied to plain ``nn.Module``s: DDP or FSDP2 (``fully_shard``).

Model files know nothing of parallelism; a trainer calls ``wrap(module, strategy, ...)`` on
each trainable model (generator and discriminator separately). With one process the module
is returned as is, so single-process runs pay no wrapper overhead.

Parameters changed in place inside a forward (a codebook revived by CVQ-VAE or set by lazy
k-means) are declared by their module's ``inplace_updated_parameters()`` method. FSDP2
computes the forward on a temporary all-gathered copy and would silently drop such
changes, so it leaves these parameters whole on every rank (``ignored_params``) and a hook
averages their gradients over the ranks instead of FSDP's reduce-scatter. The module must
make the same in-place change on every rank (CVQ and k-means sync over the group).
"""

from __future__ import annotations

import typing
from typing import Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vq.core import distributed
from vq.core.config import Config
from vq.core.errors import UserError


class StrategyConfig(Config):
    kind: Literal["ddp", "fsdp"] = "ddp"
    find_unused_parameters: bool = False
    """DDP only; needed when part of a module gets no gradient in some iterations."""
    fsdp_min_params: int = 1_000_000
    """FSDP only: sub-modules with at least this many parameters become their own shard unit."""
    fsdp_reshard_after_forward: bool = True

    @classmethod
    def option(cls, kind: str) -> StrategyConfig:
        """The strategy a config file's ``strategy`` option names; another name is one
        ``UserError`` line listing the choices."""
        choices = typing.get_args(cls.model_fields["kind"].annotation)
        if kind not in choices:
            raise UserError(f"option strategy {kind!r}: choose one of {', '.join(choices)}")
        return cls(kind=kind)


def has_trainable_parameters(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def inplace_updated_parameters(module: nn.Module) -> set[nn.Parameter]:
    """The parameters that sub-modules of ``module`` declare they change in place inside
    their forward (their ``inplace_updated_parameters()`` method)."""
    found: set[nn.Parameter] = set()
    for m in module.modules():
        declare = getattr(m, "inplace_updated_parameters", None)
        if callable(declare):
            found.update(declare())
    return found


def _shard_units(
    module: nn.Module, min_params: int, whole: set[nn.Parameter] | None = None
) -> list[nn.Module]:
    """Sub-modules that become their own FSDP unit, in post-order (children first).

    A sub-module is a unit when the trainable parameters of its subtree that no smaller unit
    already holds (and that are not kept ``whole``) number at least ``min_params``; the root
    holds whatever remains.
    """
    units: list[nn.Module] = []
    whole = whole or set()

    def uncovered(m: nn.Module) -> int:
        total = sum(uncovered(c) for c in m.children())
        total += sum(
            p.numel() for p in m.parameters(recurse=False) if p.requires_grad and p not in whole
        )
        if m is not module and total >= min_params:
            units.append(m)
            return 0
        return total

    uncovered(module)
    return units


def wrap(
    module: nn.Module,
    strategy: StrategyConfig,
    device: torch.device,
    *,
    param_dtype: torch.dtype | None = None,
) -> nn.Module:
    """``module`` wrapped for data parallelism across the current process group.

    ``param_dtype`` (FSDP only) is the compute dtype of the ``MixedPrecisionPolicy``;
    gradients are always reduced in fp32.
    """
    if distributed.world_size() == 1 or not has_trainable_parameters(module):
        return module
    if strategy.kind == "ddp":
        return DistributedDataParallel(
            module,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=strategy.find_unused_parameters,
        )
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # DDP broadcasts rank 0's weights when it wraps; fully_shard does not, and ranks are
    # seeded differently, so make every rank start from rank 0's initialisation first.
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            distributed.broadcast_(tensor.data)
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    whole = inplace_updated_parameters(module)
    options = {
        "mp_policy": policy,
        "reshard_after_forward": strategy.fsdp_reshard_after_forward,
        "ignored_params": whole or None,
    }
    for unit in _shard_units(module, strategy.fsdp_min_params, whole):
        fully_shard(unit, **options)
    fully_shard(module, **options)
    for parameter in whole:
        if parameter.requires_grad:
            parameter.register_post_accumulate_grad_hook(_average_gradient)
    return module


def _average_gradient(parameter: nn.Parameter) -> None:
    """Mean of ``parameter.grad`` over the ranks, in place (a parameter FSDP leaves whole).

    Under gradient accumulation it runs on every micro-batch: the gradient accumulated so
    far is already equal on every rank, so averaging the sum again changes only the newest
    micro-batch's part, into its mean. The result is the mean of the summed gradients.
    """
    assert parameter.grad is not None
    distributed.all_reduce_(parameter.grad, "mean")


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module under a DDP wrapper (FSDP2 shards in place, nothing to unwrap)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def is_sharded(module: nn.Module) -> bool:
    """True for a module managed by FSDP2 (its state needs ``torch.distributed.checkpoint``)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)
