"""``--compile``: compiled models compute what eager ones do, and a machine that cannot
compile refuses the flag in one line before anything is written.

The compiled runs are slow (inductor generates and builds C++ on the first call: tens of
seconds on a shared 2-core CPU), so they are marked slow and use the tiniest models.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vq.core.compiling import check_compile
from vq.core.errors import UserError
from vq.generators import GPT2, Llama, generate
from vq.train.cli import train_main
from vq.train.sample import sample_main

sys.path.insert(0, str(Path(__file__).parent))
from test_sample import Setup

REPO = Path(__file__).resolve().parents[3]
AUTOENCODER = REPO / "configs" / "demo" / "autoencoder_photos.py"
NUM_CLASSES, CODEBOOK = 4, 16


def peaked(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights large enough for class-dependent, non-uniform logits."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def networks() -> dict[str, torch.nn.Module]:
    vocab = NUM_CLASSES + 1 + CODEBOOK
    return {
        "llama": peaked(Llama.from_preset("tiny", vocab_size=vocab)),
        "gpt2": peaked(GPT2.from_preset("tiny", vocab_size=vocab, dropout=0.0)),
    }


def draw(model: torch.nn.Module, **flags: bool) -> torch.Tensor:
    classes = torch.tensor([0, 1, 3])
    return generate(
        model, classes, (4, 4), CODEBOOK, NUM_CLASSES, guidance_scale=1.5,
        generator=torch.Generator().manual_seed(7), **flags,
    )  # fmt: skip


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_fixed_shape_step_draws_the_tokens_of_the_growing_prefix(arch: str) -> None:
    model = networks()[arch]
    assert torch.equal(draw(model, static_shapes=True), draw(model))
    with pytest.raises(ValueError, match="need use_cache"):
        draw(model, static_shapes=True, use_cache=False)


@pytest.mark.slow
def test_compiled_sampling_draws_the_eager_tokens(one_thread: None) -> None:
    model = networks()["llama"]
    assert torch.equal(draw(model, compile=True), draw(model))


def _losses(work: Path) -> list[float]:
    (log,) = (work / "logs").glob("*.log")
    return [float(m) for m in re.findall(r"l1_loss ([0-9.e-]+)", log.read_text())]


@pytest.mark.slow
def test_compiled_training_matches_eager_losses(tmp_path: Path, one_thread: None) -> None:
    def run(name: str, *flags: str) -> Path:
        argv = [name, str(AUTOENCODER), "--work-dirs", str(tmp_path), *flags]
        argv += ["--config-options", "iters:4", "image_size:16", "batch_size:4"]
        argv += ["--override", ".loop.log_interval:1", ".model.levels:1", ".model.width:8"]
        assert train_main(argv) == 0
        return tmp_path / name

    eager, compiled = run("eager"), run("compiled", "--compile")
    assert len(_losses(eager)) == 4
    assert _losses(compiled) == pytest.approx(_losses(eager), rel=1e-3)
    assert "compile on" in next((compiled / "logs").glob("*.log")).read_text()
    # checkpoints keep the plain module's names: interchangeable with eager runs
    files = [w / "checkpoints/iter_4/models/model.safetensors" for w in (eager, compiled)]
    assert load_file(str(files[0])).keys() == load_file(str(files[1])).keys()


def test_compile_without_a_cpp_compiler_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(UserError, match=r"needs a C\+\+ compiler.*\$CXX=no-such-compiler"):
        check_compile(torch.device("cpu"))
    argv = ["a", str(AUTOENCODER), "--work-dirs", str(tmp_path), "--compile", "--nproc", "1"]
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --compile on cpu needs a C++ compiler") and "\n" not in err
    assert not (tmp_path / "a").exists()

    setup = Setup(tmp_path / "sample", guidance=True)
    assert sample_main(setup.argv("s", "--compile")) == 2
    assert capsys.readouterr().err.startswith("error: --compile on cpu needs a C++ compiler")
    assert not (tmp_path / "sample" / "work").exists()
