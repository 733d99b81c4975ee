"""``test`` and ``val`` on AR runs: loss, token accuracy and gFID with and without guidance,
on a tiny guided LLaMA over the tiny tokenizer of ``test_ar`` (9 photos, 16 px, 4x4 tokens),
with a random Inception network saved to a temporary file."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch.nn import functional as F

from vq.core.seeding import seeded_generator
from vq.core.testing import run_distributed
from vq.generators import generate
from vq.train.data import build_dataset, collate, to_uint8
from vq.train.eval_cli import command_main
from vq.train.metrics import FIDStatistics, InceptionFeatures, read_metrics_json
from vq.train.metrics.fid import frechet_distance_from_features
from vq.train.metrics.inception import FEATURES
from vq.train.tokenizer_source import load_frozen_tokenizer
from vq.train.trainers.ar import build_network

sys.path.insert(0, str(Path(__file__).parent))
from test_ar import _train
from test_sample import Setup

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

NUM_CLASSES = 9
IMAGE_OFFSET = NUM_CLASSES + 1  # classes, then the null class, then the codes


@pytest.fixture(scope="module")
def guided(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return Setup(tmp_path_factory.mktemp("guided"), guidance=True)


def _test_argv(setup: Setup, name: str, inception: Path, stats: Path, *flags: str) -> list[str]:
    argv = setup.argv(name, "--inception", str(inception), "--fid-statistics", str(stats))
    at = argv.index("--config-options")
    return [*argv[:at], "--require-fid", *flags, *argv[at:]]


def _by_hand(setup: Setup) -> dict[str, object]:
    """Loss and argmax accuracy of the 9 val images, and their images generated one by one
    from their classes with their own seeded generators, computed directly."""
    tokenizer = load_frozen_tokenizer(setup.tokenizer_config, [setup.tokenizer_weights])
    network = build_network(setup.config, setup.space).eval()
    network.load_state_dict(load_file(str(setup.weights)))
    batch = collate(list(build_dataset(setup.config.data, "val")))
    with torch.no_grad():
        codes = tokenizer.eval().encode(batch["image"]).flatten(1)  # (9, 16)
        sequence = torch.cat((batch["category"][:, None], codes + IMAGE_OFFSET), dim=1)
        logits = network(sequence)[:, :-1, IMAGE_OFFSET:]  # (9, 16, 32): image codes only
        nll = -F.log_softmax(logits.double(), dim=-1).gather(-1, codes[..., None])[..., 0]
        hits = (logits.argmax(-1) == codes).double()
        generated = {}
        for scale in (1.0, 1.75):
            images = []
            for i, c in enumerate(batch["category"].tolist()):
                tokens = generate(
                    network,
                    torch.tensor([c]),
                    setup.space.grid,
                    setup.space.codebook_size,
                    NUM_CLASSES,
                    guidance_scale=scale,
                    top_k=600,
                    top_p=0.92,
                    generator=seeded_generator("cpu", 0, i),
                )
                images.append(to_uint8(tokenizer.decode(tokens)))
            generated[scale] = torch.cat(images)  # (9, 3, 16, 16) uint8
    return {
        "loss": float(nll.mean(1).mean()),
        "top1_accuracy": float(hits.mean(1).mean()),
        "ids": batch["id"],
        "generated": generated,
    }


def _png(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)


def check_generated(
    out: Path, expected: dict, metrics: dict, inception_weights: Path, stats: Path
) -> None:
    """The PNGs under ``out`` at scales 1 and 1.75 are ``expected["generated"]`` (images
    drawn one by one), gFID is the Frechet distance of their features to ``stats``, and
    guidance changed the images."""
    inception = InceptionFeatures(inception_weights)
    reference = FIDStatistics.load(stats)
    for scale, folder in ((1.0, "generated"), (1.75, "generated_cfg1.75")):
        pngs = torch.stack(
            [_png(out / "visuals" / folder / f"{i.replace('/', '-')}.png") for i in expected["ids"]]
        )
        assert torch.equal(pngs, expected["generated"][scale]), folder
        with torch.no_grad():
            features = inception(pngs)[FEATURES]
        gfid = frechet_distance_from_features(features, reference.mu, reference.sigma)
        key = "gfid" if scale == 1.0 else "gfid_cfg1.75"
        assert metrics[key] == pytest.approx(gfid, rel=1e-5), key
    assert not torch.equal(expected["generated"][1.0], expected["generated"][1.75])
    assert (out / "generated.png").is_file()


def test_ar_test_measures_loss_accuracy_and_gfid_with_and_without_guidance(
    guided: Setup, random_inception: Path, tmp_path: Path
) -> None:
    stats = tmp_path / "photos_val_16.npz"
    argv = _test_argv(guided, "ar", random_inception, stats, "--batch-size", "4")
    assert command_main("test", [*argv, "--visual", "generated.*"]) == 0
    out = guided.root / "work" / "ar_test"
    record = read_metrics_json(out / "metrics.json")
    assert record["image_count"] == 9 and record["reference"] == "photos_val_16"
    generation = record["preprocessing"]["generation"]
    assert generation["guidance_scales"] == [1.0, 1.75] and generation["images_per_scale"] == 9
    metrics = record["metrics"]

    expected = _by_hand(guided)
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert metrics["top1_accuracy"] == pytest.approx(expected["top1_accuracy"], abs=1e-9)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    for key in ("codebook_usage", "codebook_entropy", "isc_mean", "isc_mean_cfg1.75"):
        assert math.isfinite(metrics[key]), key

    # every generated PNG is the image drawn alone from its class with its own generator
    check_generated(out, expected, metrics, random_inception, stats)

    # another batch size draws the same images: the numbers depend on the seed alone
    again = _test_argv(guided, "again", random_inception, stats, "--batch-size", "3")
    assert command_main("test", again) == 0
    other = read_metrics_json(guided.root / "work" / "again_test" / "metrics.json")["metrics"]
    for key in ("loss", "accuracy", "top1_accuracy", "gfid", "gfid_cfg1.75"):
        assert other[key] == pytest.approx(metrics[key], rel=1e-5), key

    # a guidance sweep and another seed
    sweep = _test_argv(guided, "sweep", random_inception, stats, "--guidance", "1.5", "3")
    assert command_main("test", [*sweep, "--seed", "1"]) == 0
    swept = read_metrics_json(guided.root / "work" / "sweep_test" / "metrics.json")["metrics"]
    assert {"gfid", "gfid_cfg1.5", "gfid_cfg3"} <= swept.keys()
    assert "gfid_cfg1.75" not in swept and swept["gfid"] != metrics["gfid"]
    assert swept["loss"] == pytest.approx(metrics["loss"], rel=1e-6)


def test_val_validates_every_checkpoint_of_an_ar_run(guided: Setup, tmp_path: Path) -> None:
    tokenizer = (guided.tokenizer_config, guided.tokenizer_weights)
    options = ["batch_size:4", "iters:2"]
    overrides = ["--override", ".loop.checkpoint_interval:1"]
    assert _train(tmp_path, "ar", tokenizer, options, *overrides) == 0
    config = tmp_path / "ar" / "ar_photos.py"
    argv = ["ar", str(config), "--work-dirs", str(tmp_path), "--inception", str(tmp_path / "no")]
    assert command_main("val", argv) == 0
    losses = [
        read_metrics_json(tmp_path / "ar" / "val" / n / "metrics.json")["metrics"]["loss"]
        for n in ("iter_1", "iter_2")
    ]
    assert all(math.isfinite(v) for v in losses) and losses[0] != losses[1]


def test_bad_ar_evaluations_fail_in_one_line(
    guided: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def error(command: str, argv: list[str]) -> str:
        assert command_main(command, argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines and lines[-1].startswith("error:"), lines
        return lines[-1]

    stats = tmp_path / "stats.npz"
    absent = tmp_path / "absent.pth"
    assert "without a null class" in error(
        "test", guided.argv("x", "--guidance", "2", "--inception", str(absent), guidance="False")
    )
    assert "--ten-crop" in error("test", _test_argv(guided, "x", absent, stats, "--ten-crop"))
    tokens = guided.argv("x", token_file=f":{tmp_path / 'tokens.safetensors'}")  # k::v, a str
    assert "set val_data" in error("test", tokens)


@pytest.mark.distributed
def test_two_processes_measure_what_one_does(
    guided: Setup, random_inception: Path, tmp_path: Path
) -> None:
    stats = tmp_path / "stats.npz"  # written by the first run, read by the second
    one = _test_argv(guided, "one", random_inception, stats, "--batch-size", "4")
    assert command_main("test", one) == 0
    # 9 images on 2 ranks in batches of 2: rank 1 repeats image 0 as padding
    two = _test_argv(guided, "two", random_inception, stats, "--batch-size", "2")
    assert run_distributed(command_main, 2, "test", two) == [0, 0]
    work = guided.root / "work"
    first = read_metrics_json(work / "one_test" / "metrics.json")
    second = read_metrics_json(work / "two_test" / "metrics.json")
    assert second["image_count"] == 9
    for key, value in first["metrics"].items():
        assert second["metrics"][key] == pytest.approx(value, rel=1e-5), key
