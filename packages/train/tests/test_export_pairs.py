"""``export`` of the paper's tokenizers: a Cluster run, and a pixel-decoder run with the
VQ-KD run it decodes, trained for a few steps through the train command on the embedded
photos; the exported directories reproduce the runs' own models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vq.core.configfile import load_config
from vq.core.tensorfiles import load_weights
from vq.decoders import DecodedTokenizer
from vq.tokenizers.api import Tokenizer
from vq.train.cli import train_main
from vq.train.data import PhotosConfig, build_dataset, collate
from vq.train.eval_cli import command_main
from vq.train.export import export_command
from vq.train.metrics import read_metrics_json
from vq.train.tokenizer_source import load_frozen_tokenizer

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "configs" / "demo"


def val_images(size: int = 32) -> dict[str, torch.Tensor]:
    return collate(list(build_dataset(PhotosConfig(image_size=size), "val")))


def train(root: Path, name: str, config: str, *options: str, weights: Path | None = None) -> Path:
    argv = [name, str(DEMO / config), "--work-dirs", str(root), "--config-options", *options]
    if weights is not None:
        argv += ["--load-model-from", str(weights)]
    assert train_main(argv) == 0
    return root / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("work_dirs")
    vqkd = train(root, "vqkd", "vqkd_photos.py", "iters:3", "batch_size:8")
    decoder = train(
        root,
        "decoder",
        "decoder_photos.py",
        f"it_config::{vqkd / 'vqkd_photos.py'}",
        "iters:2",
        "batch_size:8",
        weights=vqkd / "checkpoints" / "latest",
    )
    cluster = train(root, "cluster", "cluster_photos.py", "iters:2", "batch_size:8")
    named = train(  # the tokenizer's weights named by the config, not --load-model-from
        root,
        "decoder_named",
        "decoder_photos.py",
        f"it_config::{vqkd / 'vqkd_photos.py'}",
        f"it_state_dict::{vqkd / 'checkpoints' / 'latest'}",
        "iters:2",
        "batch_size:8",
    )
    return {"vqkd": vqkd, "decoder": decoder, "cluster": cluster, "decoder_named": named}


@pytest.mark.slow
def test_a_decoder_run_exports_the_pair_the_ar_stage_uses(runs, tmp_path, capsys):
    out = tmp_path / "pair"
    vqkd_weights = runs["vqkd"] / "checkpoints" / "latest"
    assert (
        export_command([str(runs["decoder"]), str(out), "--tokenizer-weights", str(vqkd_weights)])
        == 0
    )
    assert "kind=decoded_tokenizer" in capsys.readouterr().out
    described = json.loads((out / "config.json").read_text())
    assert described["kind"] == "decoded_tokenizer" and described["omitted_parts"] == ["decoder"]

    loaded = Tokenizer.from_pretrained(out)
    reference = load_frozen_tokenizer(
        runs["decoder"] / "decoder_photos.py",
        [runs["decoder"] / "checkpoints" / "latest", vqkd_weights],
    )
    assert isinstance(reference, DecodedTokenizer)
    batch = val_images()
    ids = loaded.encode(batch["original_image"])
    with torch.no_grad():
        assert torch.equal(ids, reference.encode(batch["image"]))
        assert torch.equal(loaded.decode(ids), reference.decode(ids).clamp(-1, 1))


@pytest.mark.slow
def test_a_decoder_run_needs_the_weights_of_its_own_tokenizer(runs, tmp_path, capsys):
    out = tmp_path / "pair"
    assert export_command([str(runs["decoder"]), str(out)]) == 2
    assert "pass --tokenizer-weights" in capsys.readouterr().err
    cluster_weights = runs["cluster"] / "checkpoints" / "latest"  # another tokenizer's file
    assert (
        export_command(
            [str(runs["decoder"]), str(out), "--tokenizer-weights", str(cluster_weights)]
        )
        == 2
    )
    error = capsys.readouterr().err
    assert error.startswith("error: --tokenizer-weights") and "does not fit" in error
    assert error.count("\n") == 1 and not out.exists()
    vqkd_weights = runs["vqkd"] / "checkpoints" / "latest"
    assert (
        export_command([str(runs["vqkd"]), str(out), "--tokenizer-weights", str(vqkd_weights)]) == 2
    )
    assert "is not a pixel-decoder run" in capsys.readouterr().err


@pytest.mark.slow
def test_a_cluster_run_exports_with_its_teacher(runs, tmp_path):
    out = tmp_path / "cluster"
    assert export_command([str(runs["cluster"]), str(out)]) == 0
    loaded = Tokenizer.from_pretrained(out)
    reference = load_config(runs["cluster"] / "cluster_photos.py").build_tokenizer()
    report = load_weights(reference, [runs["cluster"] / "checkpoints" / "latest"])
    assert not report.missing and not report.unexpected
    batch = val_images()
    ids = loaded.encode(batch["original_image"])
    assert ids.shape == (9, 4, 4)
    with torch.no_grad():
        assert torch.equal(ids, reference.encode(batch["image"]))
    torch.testing.assert_close(loaded.codes(ids), reference.codes(ids), rtol=0, atol=0)


@pytest.mark.slow
def test_a_decoder_run_whose_config_names_its_tokenizer_needs_no_more(runs, tmp_path, capsys):
    # export, the AR stage's frozen tokenizer and the run's own model agree, with nothing
    # but the decoder run (its config's it_state_dict supplies the frozen tokenizer)
    run = runs["decoder_named"]
    out = tmp_path / "pair"
    assert export_command([str(run), str(out)]) == 0
    assert "kind=decoded_tokenizer" in capsys.readouterr().out
    frozen = load_frozen_tokenizer(run / "decoder_photos.py", [run / "checkpoints" / "latest"])
    batch = val_images()
    ids = Tokenizer.from_pretrained(out).encode(batch["original_image"])
    with torch.no_grad():
        assert torch.equal(ids, frozen.encode(batch["image"]))
    # test (the evaluation command) of the decoder run loads the same frozen tokenizer: the
    # codebook usage of its val pass equals the one of the tokens computed here
    argv = ["named", str(run / "decoder_photos.py"), "--work-dirs", str(tmp_path)]
    argv += ["--load-model-from", str(run / "checkpoints" / "latest"), "--batch-size", "4"]
    assert command_main("test", argv) == 0
    metrics = read_metrics_json(tmp_path / "named_test" / "metrics.json")["metrics"]
    assert metrics["codebook_usage"] == pytest.approx(len(torch.unique(ids)) / frozen.num_codes)
