"""Mixed precision: choosing the autocast dtype and keeping sensitive code in fp32.

Forward passes may run in bf16 (or fp16 with a grad scaler where bf16 is missing), but
quantizer distances, codebook updates and losses must see fp32 values. ``fp32`` disables
autocast for a region and casts floating point tensors up, so that code inside can be
written as if autocast did not exist.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])


def autocast_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the device supports it (CPU, CUDA with bf16), else fp16."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of a forward pass (a no-op when ``enabled`` is False)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=autocast_dtype(device))


def needs_grad_scaler(device: torch.device, enabled: bool) -> bool:
    """fp16 autocast needs loss scaling; bf16 and fp32 do not."""
    return enabled and autocast_dtype(device) == torch.float16


def float32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as fp32 if it is a floating point tensor of lower precision."""
    if tensor.is_floating_point() and tensor.dtype != torch.float64:
        return tensor.float()
    return tensor


@contextlib.contextmanager
def fp32_region(device_type: str | None = None) -> Iterator[None]:
    """Disable autocast for the enclosed code (on ``device_type``, default: CPU and CUDA)."""
    types = [device_type] if device_type else ["cpu", "cuda"]
    with contextlib.ExitStack() as stack:
        for t in types:
            if t == "cuda" and not torch.cuda.is_available():
                continue
            stack.enter_context(torch.autocast(t, enabled=False))
        yield


def fp32(function: F) -> F:
    """Decorator: run ``function`` outside autocast with its tensor arguments cast to fp32."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        args = tuple(float32(a) if isinstance(a, torch.Tensor) else a for a in args)
        kwargs = {k: float32(v) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        with fp32_region():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
