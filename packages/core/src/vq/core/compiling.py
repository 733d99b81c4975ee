"""``--compile``: model modules compiled with ``torch.compile``, loops left as Python.

A module is compiled in place (``nn.Module.compile``), so its state-dict keys stay those of
the plain module: checkpoints written with and without ``--compile`` are interchangeable.
On CUDA the mode is ``reduce-overhead`` (CUDA graphs) for inference steps with fixed shapes
and the default mode for training (shapes and optimizer state change between calls); on
CPU always the default mode, which generates C++ and so needs a C++ compiler.

``check_compile(device)`` is called before anything is written: a machine that cannot
compile is one ``UserError`` line, never a traceback in the middle of a run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import torch
from torch import nn

from vq.core.errors import UserError

# What inductor's C++ backend tries when $CXX is unset.
CPP_COMPILERS = ("c++", "g++", "clang++")


def check_compile(device: torch.device | None = None) -> None:
    """Raise ``UserError`` when ``torch.compile`` cannot generate code for ``device``
    (default: the device a launch picks, CUDA when there is one)."""
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if importlib.util.find_spec("torch._inductor") is None:
        raise UserError(f"--compile: this torch {torch.__version__} has no inductor backend")
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            raise UserError("--compile on CUDA needs triton (pip install triton)")
        return
    wanted = os.environ.get("CXX")
    found = shutil.which(wanted) if wanted else next(filter(shutil.which, CPP_COMPILERS), None)
    if not found:
        tried = f"$CXX={wanted}" if wanted else ", ".join(CPP_COMPILERS)
        raise UserError(
            f"--compile on {device.type} needs a C++ compiler for inductor; none found ({tried})"
        )


def inference_mode(device: torch.device) -> str | None:
    """``torch.compile`` mode of a fixed-shape inference step: CUDA graphs on CUDA."""
    return "reduce-overhead" if device.type == "cuda" else None


def compile_module(module: nn.Module, methods: tuple[str, ...] = ("forward",)) -> nn.Module:
    """``module`` with ``methods`` compiled in place (default mode); returns it.

    ``forward`` goes through ``nn.Module.compile`` (hooks and wrappers see the module as
    before); another method, e.g. a tokenizer's ``encode``, is replaced on the instance by
    its compiled bound method. Parameters stay the module's own, so loading new weights
    into it later is seen by the compiled code.
    """
    for name in methods:
        if name == "forward":
            module.compile()
        else:
            setattr(module, name, torch.compile(getattr(module, name)))
    return module
