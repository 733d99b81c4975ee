"""The export command (training checkpoint -> from_pretrained directory) and convert's CLI."""

from __future__ import annotations

import textwrap

import pytest
import torch

from vq.core.checkpoint import Checkpointer, Tracked, TrainingState
from vq.core.configfile import load_config
from vq.core.errors import UserError
from vq.tokenizers.api import Tokenizer
from vq.tokenizers.models.pixel_tokenizer import PixelTokenizer
from vq.train.export import convert_command, export, export_command

RUN_CONFIG = textwrap.dedent(
    """
    from typing import Literal

    from vq.core.loop import LoopConfig, RunConfig
    from vq.tokenizers.models.pixel_tokenizer import PixelTokenizer, PixelTokenizerConfig
    from vq.tokenizers.quantizers import VectorQuantizerConfig
    from vq.train.data import PhotosConfig
    from vq.train.tokenizer_run import TokenizerRunConfig


    class TinyTokenizerRun({base}):
        trainer: Literal["tiny"] = "tiny"
        model: PixelTokenizerConfig
        data: PhotosConfig = PhotosConfig(image_size=16)

        def build_tokenizer(self):
            return PixelTokenizer(self.model)

    def config():
        quantizer = VectorQuantizerConfig(num_codes=32, dim=8)
        model = PixelTokenizerConfig.from_preset("tiny", quantizer)
        return TinyTokenizerRun(loop=LoopConfig(iters=1), model=model)
    """
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_run(tmp_path, iterations=(5, 10)):
    """A work dir as a tokenizer run leaves it: resolved config + checkpoints/iter_N."""
    run_dir = tmp_path / "work_dirs" / "tiny"
    run_dir.mkdir(parents=True)
    config_file = run_dir / "tiny_photos.py"
    config_file.write_text(RUN_CONFIG.format(base="TokenizerRunConfig"))
    config = load_config(config_file)
    torch.manual_seed(0)
    model = PixelTokenizer(config.model)
    checkpointer = Checkpointer(run_dir / "checkpoints", fingerprint="f", strategy="ddp")
    for iteration in iterations:
        with torch.no_grad():
            model.decoder.out_conv.bias.add_(1.0)  # checkpoints differ
        checkpointer.save(TrainingState(modules={"model": Tracked(model)}), iteration)
    return run_dir, model


def images() -> torch.Tensor:
    return torch.randint(0, 256, (2, 3, 16, 16), generator=torch.Generator().manual_seed(0)).to(
        torch.uint8
    )


def test_export_of_the_latest_checkpoint_reproduces_the_trained_model(tmp_path):
    run_dir, model = make_run(tmp_path)  # model holds the weights of iter_10
    tokenizer = export(run_dir, tmp_path / "out")  # the image size is the run's data's
    loaded = Tokenizer.from_pretrained(tmp_path / "out")
    x = images()
    ids = loaded.encode(x)
    with torch.no_grad():
        assert torch.equal(ids, model.eval().encode(x.float() / 127.5 - 1))
        assert torch.equal(loaded.decode(ids), model.decode(ids).clamp(-1, 1))
    assert tokenizer.image_size == 16 and loaded.grid_size() == (4, 4)


def test_export_of_one_checkpoint_with_an_explicit_config(tmp_path):
    run_dir, model = make_run(tmp_path)
    (run_dir / "notes.py").write_text("")  # two .py files: the config must be named
    with pytest.raises(UserError, match="--config"):
        export(run_dir / "checkpoints" / "iter_5", tmp_path / "out")
    export(
        run_dir / "checkpoints" / "iter_5", tmp_path / "out", config_path=run_dir / "tiny_photos.py"
    )
    bias = Tokenizer.from_pretrained(tmp_path / "out").model.decoder.out_conv.bias
    assert (bias - (model.decoder.out_conv.bias.detach() - 1.0)).abs().max() < 1e-6  # iter_5


def test_export_command_reports_user_errors(tmp_path, capsys):
    run_dir, _ = make_run(tmp_path, iterations=(1,))
    assert export_command([str(run_dir), str(tmp_path / "out"), "--image-size", "16"]) == 0
    assert "wrote Tokenizer(kind=pixel_tokenizer" in capsys.readouterr().out
    assert Tokenizer.from_pretrained(tmp_path / "out").image_size == 16

    assert export_command([str(tmp_path / "nothing"), str(tmp_path / "out2")]) == 2
    assert "neither a run directory" in capsys.readouterr().err

    # a run config with a tokenizer model and build_tokenizer() that does not declare itself
    # a tokenizer run (TokenizerRunConfig) is refused, not guessed at
    (run_dir / "tiny_photos.py").write_text(RUN_CONFIG.format(base="RunConfig"))
    assert export_command([str(run_dir), str(tmp_path / "out3")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: export:") and "not a tokenizer run" in error
    assert error.count("\n") == 1 and not (tmp_path / "out3").exists()


def test_convert_command_checks_its_input(tmp_path, capsys):
    path = tmp_path / "ckpt.pt"
    torch.save({"quantize.embedding.weight": torch.zeros(4, 2)}, path)
    assert convert_command(["taming", str(path), str(tmp_path / "out"), "--options", "size:3"]) == 2
    assert "takes no option 'size'" in capsys.readouterr().err
    assert convert_command(["llamagen", str(path), str(tmp_path / "out")]) == 2
    assert "expected a tensor 'post_encode.conv.weight'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert_command(["dalle", str(path), str(tmp_path / "out")])
