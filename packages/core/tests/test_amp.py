"""``vq.core.amp.warn_if_slow``: a CPU without bf16/fp16 kernels gets one warning per flag.

Whether oneDNN has the kernels is what decides it, so the check runs in a subprocess whose
oneDNN is limited to AVX2 (``ONEDNN_MAX_CPU_ISA``), where bf16 has no fast kernels on any
machine, and in this process, where the answer must equal torch's own check.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import torch

from vq.core import amp
from vq.core.logging import LOGGER

PROBE = """
import json, logging, torch
from vq.core import amp
from vq.core.logging import LOGGER
seen = []
class Keep(logging.Handler):
    def emit(self, record):
        seen.append(record.getMessage())
LOGGER.addHandler(Keep())
cpu = torch.device("cpu")
warned = {str(d): amp.warn_if_slow(cpu, d, "--flag") for d in (torch.float32, torch.bfloat16)}
print(json.dumps({
    "warned": warned,
    "torch_says": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    "messages": seen,
    "cuda_warns": amp.warn_if_slow(torch.device("cuda"), torch.bfloat16, "--flag"),
}))
"""


def probe_limited_to_avx2() -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_cpu_without_bf16_kernels_warns_once_and_names_the_flag() -> None:
    limited = probe_limited_to_avx2()
    assert limited["torch_says"] is False
    assert limited["warned"] == {"torch.float32": False, "torch.bfloat16": True}
    assert len(limited["messages"]) == 1
    message = limited["messages"][0]
    assert message.startswith("warning: --flag: this CPU has no bfloat16 kernels")
    assert "AVX512-BF16 or AMX" in message
    assert limited["cuda_warns"] is False  # only CPUs are checked


@pytest.mark.skipif("ONEDNN_MAX_CPU_ISA" in os.environ, reason="oneDNN limited by the caller")
def test_this_cpu_warns_exactly_when_torch_lacks_the_kernels() -> None:
    seen: list[str] = []
    keep = logging.Handler()
    keep.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    LOGGER.addHandler(keep)
    try:
        cpu = torch.device("cpu")
        assert amp.warn_if_slow(cpu, torch.float32, "--flag") is False
        warned = amp.warn_if_slow(cpu, torch.bfloat16, "--flag")
    finally:
        LOGGER.removeHandler(keep)
    assert warned is not bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert len(seen) == int(warned)
