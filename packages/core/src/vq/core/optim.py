"""Optimizers, learning-rate schedules and one optimisation step done right.

``Optimization`` bundles what one trainable module needs: its optimizer, LR schedule, grad
scaler (fp16 only), gradient clipping, gradient accumulation (``no_sync`` on all but the
last micro-batch) and an optional weight EMA. A trainer with a generator and a
discriminator simply holds two of them::

    with opt.accumulate():          # grad sync only on the last micro-batch
        with run.autocast():
            loss = compute_loss(model, batch)
        opt.backward(loss)
    logs = opt.step()               # on the last micro-batch: unscale, clip, step, schedule
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from vq.core.config import Config
from vq.core.ema import EMAConfig, ModelEMA


class OptimizerConfig(Config):
    kind: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.9
    """Only for ``sgd``."""


class ScheduleConfig(Config):
    """LR multiplier per iteration: linear warm-up, then constant or cosine to ``min_lr``.

    ``warmup_start_factor`` 1e-8 and ``warmup_iters`` 25_000, cosine over the remaining
    225_000 iterations down to 1e-5 is VQ-KD's reference schedule.
    """

    kind: Literal["constant", "cosine"] = "constant"
    warmup_iters: int = 0
    warmup_start_factor: float = 1e-8
    min_lr: float = 0.0
    """Absolute floor of the cosine schedule (the reference's ``eta_min``)."""
    total_iters: int | None = None
    """Length of warm-up + decay; defaults to the run's iterations."""


class OptimizationConfig(Config):
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    clip_grad_norm: float | None = None
    ema: EMAConfig | None = None


def build_optimizer(
    params: Iterable[nn.Parameter] | Iterable[dict[str, Any]], config: OptimizerConfig
) -> torch.optim.Optimizer:
    params = list(params)
    if config.kind == "adam":
        return torch.optim.Adam(
            params,
            lr=config.lr,
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
    if config.kind == "adamw":
        return torch.optim.AdamW(
            params,
            lr=config.lr,
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def lr_factor(config: ScheduleConfig, base_lr: float, total_iters: int, step: int) -> float:
    """Multiplier of ``base_lr`` after ``step`` optimizer steps."""
    total = config.total_iters or total_iters
    if step < config.warmup_iters:
        start = config.warmup_start_factor
        return start + (1.0 - start) * step / config.warmup_iters
    if config.kind == "constant":
        return 1.0
    decay = max(total - config.warmup_iters, 1)
    progress = min((step - config.warmup_iters) / decay, 1.0)
    floor = config.min_lr / base_lr if base_lr else 0.0
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: ScheduleConfig, total_iters: int
) -> LambdaLR:
    """One multiplier per parameter group, each against the group's own base LR, so the
    cosine ends at the absolute ``min_lr`` in every group (groups may differ in LR)."""

    def factor_of(base_lr: float) -> Callable[[int], float]:
        return lambda step: lr_factor(config, base_lr, total_iters, step)

    bases = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
    return LambdaLR(optimizer, [factor_of(base) for base in bases])


def clip_gradients(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale the gradients of ``params`` to a global L2 norm of at most ``max_norm``; returns
    the norm before clipping, a 0-dim tensor on the gradients' device.

    Nothing here reads the device: the norm and the clip factor stay tensors (reading the
    norm, e.g. to log it, waits for the backward pass to finish).

    FSDP shards gradients (DTensors) except those of parameters it keeps whole
    (``vq.core.parallel``); torch's ``clip_grad_norm_`` refuses such a mix, so each kind is
    normed apart, the norms combined, and both scaled by the same factor.
    """
    sharded = [p for p in params if hasattr(p.grad, "full_tensor")]
    whole = [p for p in params if not hasattr(p.grad, "full_tensor")]
    if not sharded or not whole:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    from torch.nn.utils import get_total_norm

    sharded_norm = get_total_norm([p.grad for p in sharded], foreach=True).full_tensor()
    whole_norm = get_total_norm([p.grad for p in whole], foreach=True)
    total = torch.hypot(sharded_norm, whole_norm.to(sharded_norm.device))
    # torch's rule, as clip_grad_norm_ computes it: a factor of 1 leaves gradients exact
    factor = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    torch._foreach_mul_([p.grad.to_local() for p in sharded], factor)
    whole_grads = [p.grad for p in whole]
    torch._foreach_mul_(whole_grads, factor.to(whole_grads[0].device))
    return total


class Optimization:
    """One trainable module: optimizer, schedule, scaler, clipping, accumulation, EMA."""

    def __init__(
        self,
        name: str,
        module: nn.Module,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        config: OptimizationConfig,
        *,
        total_iters: int,
        accumulation: int = 1,
        grad_scaler: bool = False,
        ema_module: nn.Module | None = None,
    ) -> None:
        self.name = name
        self.module = module
        self.config = config
        self.optimizer = build_optimizer(params, config.optimizer)
        self.scheduler = build_scheduler(self.optimizer, config.schedule, total_iters)
        self.scaler = torch.amp.GradScaler(enabled=grad_scaler)
        self.accumulation = accumulation
        self.micro = 0
        self.steps = 0
        self.ema = ModelEMA(ema_module or module, config.ema) if config.ema else None

    @property
    def params(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    @property
    def last_micro(self) -> bool:
        return self.micro == self.accumulation - 1

    @contextlib.contextmanager
    def accumulate(self) -> Iterator[None]:
        """Forward + backward of one micro-batch; gradients sync on the last one only."""
        sync = self.last_micro
        if hasattr(self.module, "no_sync") and not sync:  # DDP
            with self.module.no_sync():
                yield
        elif hasattr(self.module, "set_requires_gradient_sync"):  # FSDP2
            self.module.set_requires_gradient_sync(sync)
            try:
                yield
            finally:
                self.module.set_requires_gradient_sync(True)
        else:
            yield

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` as :meth:`backward` differentiates it: divided by the accumulation
        steps and, with fp16, multiplied by the grad scaler's loss scale."""
        return self.scaler.scale(loss / self.accumulation)

    def backward(self, loss: torch.Tensor, retain_graph: bool = False) -> None:
        self.scale(loss).backward(retain_graph=retain_graph)

    def step(self, iteration: int | None = None) -> dict[str, torch.Tensor | float]:
        """Count a micro-batch; on the last one, step and return ``lr`` (a float) and
        ``grad_norm`` (a device tensor, read by the loop once per log interval)."""
        if not self.last_micro:
            self.micro += 1
            return {}
        self.micro = 0
        logs: dict[str, torch.Tensor | float] = {"lr": self.optimizer.param_groups[0]["lr"]}
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.params if p.grad is not None]
        max_norm = self.config.clip_grad_norm or math.inf
        if params:
            logs["grad_norm"] = clip_gradients(params, max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.steps += 1
        if self.ema is not None:
            self.ema.update(iteration if iteration is not None else self.steps)
        return logs

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.steps = int(state["steps"])
