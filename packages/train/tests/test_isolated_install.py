"""vq-tokenizers + vq-core install and work alone, from their built wheels.

Builds both wheels with ``uv build``, installs them into a fresh virtual environment of the
current interpreter (dependencies from the uv cache or PyPI; no interpreter download), and
runs a downstream user's script there: build a tiny tokenizer, save and reload it, encode
and decode, and check that no other vq package is importable. Set ``VQ_SKIP_ISOLATED=1`` to
skip it (e.g. offline).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

USER_SCRIPT = textwrap.dedent(
    """
    import importlib.util, sys, tempfile
    import torch
    from vq.tokenizers.api import Tokenizer
    from vq.tokenizers.models.pixel_tokenizer import PixelTokenizer, PixelTokenizerConfig
    from vq.tokenizers.quantizers import VectorQuantizerConfig

    torch.manual_seed(0)
    config = PixelTokenizerConfig.from_preset("tiny", VectorQuantizerConfig(num_codes=32, dim=8))
    tokenizer = Tokenizer(PixelTokenizer(config), image_size=16)
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    with tempfile.TemporaryDirectory() as directory:
        tokenizer.save_pretrained(directory)
        loaded = Tokenizer.from_pretrained(directory)
    ids = loaded.encode(images)
    assert ids.shape == (2, 4, 4) and torch.equal(ids, tokenizer.encode(images))
    assert torch.equal(loaded.decode(ids, uint8=True), tokenizer.decode(ids, uint8=True))
    others = [m for m in ("vq.train", "vq.generators", "vq.decoders")
              if importlib.util.find_spec(m) is not None]
    assert not others, others
    heavy = [m for m in ("torchvision", "torch_fidelity", "tensorboard") if m in sys.modules]
    assert not heavy, heavy
    print("ok", tuple(ids.shape))
    """
)


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)  # uv must target the fresh environment, not the workspace's
    result = subprocess.run(command, capture_output=True, text=True, env=env, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("VQ_SKIP_ISOLATED") == "1", reason="VQ_SKIP_ISOLATED=1")
def test_tokenizers_install_and_run_without_the_rest(tmp_path):
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    dist = tmp_path / "dist"
    for package in ("vq-core", "vq-tokenizers"):
        run([uv, "build", "-q", "--package", package, "--wheel", "--out-dir", str(dist)], cwd=ROOT)
    wheels = sorted(dist.glob("*.whl"))
    assert [w.name.split("-")[0] for w in wheels] == ["vq_core", "vq_tokenizers"]
    for wheel, own in zip(wheels, ("vq/core/", "vq/tokenizers/")):
        code = [
            n
            for n in zipfile.ZipFile(wheel).namelist()
            if not n.split("/")[0].endswith(".dist-info")
        ]
        assert code and all(n.startswith(own) for n in code), code  # no vq/__init__.py either

    venv = tmp_path / "venv"
    run([uv, "venv", "-q", str(venv), "--python", sys.executable])
    python = venv / "bin" / "python"
    run([uv, "pip", "install", "-q", "--python", str(python), *map(str, wheels)])
    result = run([str(python), "-c", USER_SCRIPT], cwd=tmp_path)
    assert result.stdout.strip() == "ok (2, 4, 4)"
