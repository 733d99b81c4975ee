"""Mixed precision: choosing the autocast dtype and keeping sensitive code in fp32.

Forward passes may run in bf16 (or fp16 with a grad scaler where bf16 is missing), but
quantizer distances, codebook updates and losses must see fp32 values. ``fp32`` disables
autocast for a region and casts floating point tensors up, so that code inside can be
written as if autocast did not exist.

On a CPU, bf16 and fp16 are fast only where oneDNN has kernels for them (AVX512-BF16 or
AMX for bf16, AVX512-FP16 or AMX-FP16 for fp16). Elsewhere PyTorch falls back to reference
kernels: ``warn_if_slow`` says so once per flag instead of letting a run crawl unexplained.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

from vq.core.logging import LOGGER

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


# The oneDNN capability check of each low-precision dtype (private ops of torch.ops.mkldnn).
_KERNEL_CHECKS = {
    torch.bfloat16: ("_is_mkldnn_bf16_supported", "AVX512-BF16 or AMX"),
    torch.float16: ("_is_mkldnn_fp16_supported", "AVX512-FP16 or AMX-FP16"),
}


def cpu_has_kernels(dtype: torch.dtype) -> bool:
    """Whether this CPU has fast (oneDNN) matmul and convolution kernels for ``dtype``.

    fp32 always has them. Where torch cannot tell (a build without the check), assume it
    does: the answer only decides whether to warn.
    """
    if dtype not in _KERNEL_CHECKS:
        return True
    check = getattr(torch.ops.mkldnn, _KERNEL_CHECKS[dtype][0], None)
    try:
        return bool(check()) if check is not None else True
    except RuntimeError:
        return True


def warn_if_slow(device: torch.device, dtype: torch.dtype, flag: str) -> bool:
    """Log a warning if ``flag`` asks for ``dtype`` compute on a CPU without its kernels.

    ``bench/precision.py`` on a 2-core EPYC with oneDNN limited to AVX2 (torch 2.15): a bf16
    linear of 64 rows took 3.0x the fp32 time and a 3x3 convolution 199x; fp16 without
    AVX512-FP16 3.4x and 228x (docs/performance.md). Returns whether it warned.
    """
    if device.type != "cpu" or cpu_has_kernels(dtype):
        return False
    name = str(dtype).removeprefix("torch.")
    LOGGER.warning(
        "warning: %s: this CPU has no %s kernels (they need %s); matmuls of more than a few "
        "rows will run several times and convolutions up to hundreds of times slower than in fp32",
        flag,
        name,
        _KERNEL_CHECKS[dtype][1],
    )
    return True


def warn_if_autocast_slow(device: torch.device, enabled: bool) -> bool:
    """``warn_if_slow`` for ``--autocast`` (a no-op when it is off)."""
    return enabled and warn_if_slow(device, autocast_dtype(device), "--autocast")


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
