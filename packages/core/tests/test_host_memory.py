"""keep_freed_host_memory: the second step of a conv net page-faults no memory anew.

Each case runs in a fresh interpreter, since the malloc settings last for the process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vq.core import host_memory, launch

pytestmark = pytest.mark.skipif(
    host_memory._glibc() is None, reason="the setting applies to glibc's malloc only"
)

# Four forward passes of a toy conv stack at 256 px: five (1, 128, 256, 256) fp32 maps
# (32 MiB each) alive together, then freed, as autograd frees activations after a step.
STEPS = """
import json, resource, sys, torch
from vq.core.host_memory import keep_freed_host_memory
applied = keep_freed_host_memory() if sys.argv[1] == "keep" else None
torch.set_num_threads(1)
x, w = torch.randn(1, 3, 256, 256), torch.randn(128, 3, 3, 3)
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    maps = [torch.nn.functional.conv2d(x, w, padding=1)]
    for _ in range(4):
        maps.append(torch.relu(maps[-1]) * 1.01)
    del maps
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""
PAGES_PER_STEP = 5 * 32 * 2**20 // 4096  # the five maps, in 4 KiB pages


def _steps(mode: str, **env: str) -> dict:
    environ = {
        k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES" and not k.startswith("MALLOC_")
    }
    out = subprocess.run(
        [sys.executable, "-c", STEPS, mode],
        env={**environ, **env},
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def test_later_steps_reuse_the_memory_the_first_step_freed():
    default, kept = _steps("default"), _steps("keep")
    # glibc's default maps each 32 MiB block anew, so every step faults all its pages in
    assert min(default["faults"][1:]) > 0.9 * PAGES_PER_STEP
    assert kept["applied"] is True
    assert kept["faults"][0] > 0.9 * PAGES_PER_STEP
    assert max(kept["faults"][1:]) < 0.01 * PAGES_PER_STEP


@pytest.mark.parametrize(
    "env",
    [
        {"GLIBC_TUNABLES": "glibc.malloc.mmap_max=65536"},
        {"MALLOC_TRIM_THRESHOLD_": "131072"},
    ],
)
def test_a_users_own_malloc_settings_are_left_alone(env):
    result = _steps("keep", **env)
    assert result["applied"] is False
    assert min(result["faults"][1:]) > 0.9 * PAGES_PER_STEP  # glibc's defaults, as asked


def test_user_tunes_malloc_reads_the_environment():
    assert not host_memory.user_tunes_malloc({})
    assert not host_memory.user_tunes_malloc({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"})
    assert host_memory.user_tunes_malloc({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert host_memory.user_tunes_malloc({"MALLOC_MMAP_MAX_": "0"})


def test_run_or_relaunch_applies_the_setting_before_run(monkeypatch):
    calls = []
    monkeypatch.setattr(launch, "keep_freed_host_memory", lambda: calls.append("keep"))
    monkeypatch.setattr(launch, "under_torchrun", lambda: False)
    code = launch.run_or_relaunch(
        1, "vq.train", [], run=lambda: calls.append("run") or 0, validate=lambda: 1
    )
    assert code == 0 and calls == ["keep", "run"]
