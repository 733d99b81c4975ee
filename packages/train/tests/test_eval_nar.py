"""``test`` and ``val`` on NAR (MaskGIT) runs: masked loss and accuracy, gFID with and
without guidance, PNGs and grids, on a tiny guided MaskGIT over the tiny tokenizer of
``test_ar`` (9 photos, 16 px, 4x4 tokens), with a random Inception network; and NAR
training on two ranks."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F

from vq.core.configfile import load_config
from vq.core.seeding import seeded_generator
from vq.core.testing import run_distributed
from vq.generators import random_mask
from vq.train.cli import consolidate_main, train_main
from vq.train.data import build_dataset, collate, to_uint8
from vq.train.eval_cli import command_main
from vq.train.metrics import read_metrics_json
from vq.train.proposal import token_space
from vq.train.tokenizer_source import load_frozen_tokenizer
from vq.train.trainers.nar import build_masked, decode_tokens, masked_block_parameters

sys.path.insert(0, str(Path(__file__).parent))
from test_ar import make_tokenizer_run
from test_eval_generator import check_generated
from test_nar import DEMO

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

NUM_STEPS = 3
SCALES = (1.0, 1.75)


class NARSetup:
    """A tokenizer run and random (peaked, class-dependent) weights of the NAR demo network."""

    def __init__(self, root: Path, guidance: bool = True) -> None:
        self.root = root
        self.tokenizer_config, self.tokenizer_weights = make_tokenizer_run(root / "tokenizer")
        self.options = {
            "ir_config": str(self.tokenizer_config),
            "ir_state_dict": str(self.tokenizer_weights),
            "image_size": 16,
            "num_steps": NUM_STEPS,
            "guidance": guidance,
        }
        self.config = load_config(DEMO, self.options)
        tokenizer = load_frozen_tokenizer(self.tokenizer_config, [self.tokenizer_weights])
        self.space = token_space(self.config, tokenizer)
        torch.manual_seed(1)
        network = build_masked(self.config, self.space)
        with torch.no_grad():
            for p in network.parameters():
                p.normal_(0.0, 0.3)
        self.weights = root / "network.safetensors"
        save_file(network.state_dict(), str(self.weights))

    def argv(self, name: str, *flags: str, **options: object) -> list[str]:
        """``test`` arguments; ``options`` replace config options."""
        values = {**self.options, **options}
        config_options = [
            f"{k}::{v}" if isinstance(v, str) else f"{k}:{v}" for k, v in values.items()
        ]
        return [
            name,
            str(DEMO),
            "--load-model-from",
            str(self.weights),
            "--work-dirs",
            str(self.root / "work"),
            *flags,
            "--config-options",
            *config_options,
        ]

    def scored(self, name: str, inception: Path, stats: Path, *flags: str) -> list[str]:
        """``argv`` that measures gFID with ``inception`` against the statistics ``stats``."""
        return self.argv(
            name, "--inception", str(inception), "--fid-statistics", str(stats), *flags
        )


@pytest.fixture(scope="module")
def nar(tmp_path_factory: pytest.TempPathFactory) -> NARSetup:
    return NARSetup(tmp_path_factory.mktemp("nar"))


def _by_hand(setup: NARSetup) -> dict[str, object]:
    """Masked loss and accuracy of the 9 val images under their own seeded masks, and their
    images decoded one by one with their own generators, computed directly."""
    tokenizer = load_frozen_tokenizer(setup.tokenizer_config, [setup.tokenizer_weights]).eval()
    network = build_masked(setup.config, setup.space).eval()
    network.load_state_dict(load_file(str(setup.weights)))
    batch = collate(list(build_dataset(setup.config.data, "val")))
    losses, hits, generated = [], [], {s: [] for s in SCALES}
    with torch.no_grad():
        codes = tokenizer.encode(batch["image"]).flatten(1)  # (9, 16)
        for i, c in enumerate(batch["category"].tolist()):
            mask = random_mask(1, 16, generator=seeded_generator("cpu", 0, i, 1), device="cpu")
            inputs = codes[i : i + 1].masked_fill(mask, network.mask_id)
            logits = network(torch.tensor([c]), inputs)[mask]  # (masked, 32)
            target = codes[i : i + 1][mask]
            losses.append(float(F.cross_entropy(logits.double(), target)))
            hits.append(float((logits.argmax(-1) == target).double().mean()))
            for scale in SCALES:
                sampling = setup.config.sampling.model_copy(
                    update={"guidance_scale": scale, "num_steps": NUM_STEPS}
                )
                grid = decode_tokens(
                    network, torch.tensor([c]), sampling, [seeded_generator("cpu", 0, i)]
                )
                generated[scale].append(to_uint8(tokenizer.decode(grid)))
    return {
        "loss": sum(losses) / len(losses),
        "masked_accuracy": sum(hits) / len(hits),
        "ids": batch["id"],
        "generated": {s: torch.cat(v) for s, v in generated.items()},  # (9, 3, 16, 16) uint8
    }


def test_nar_test_measures_masked_loss_accuracy_and_gfid_with_and_without_guidance(
    nar: NARSetup, random_inception: Path, tmp_path: Path
) -> None:
    stats = tmp_path / "photos_val_16.npz"
    argv = nar.scored("nar", random_inception, stats, "--batch-size", "4", "--require-fid")
    assert command_main("test", [*argv, "--visual", "generated.*"]) == 0
    out = nar.root / "work" / "nar_test"
    record = read_metrics_json(out / "metrics.json")
    assert record["image_count"] == 9
    generation = record["preprocessing"]["generation"]
    assert generation["guidance_scales"] == list(SCALES) and generation["images_per_scale"] == 9
    assert generation["num_steps"] == NUM_STEPS and generation["choice_temperature"] == 4.5
    metrics = record["metrics"]

    expected = _by_hand(nar)
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert metrics["masked_accuracy"] == pytest.approx(expected["masked_accuracy"], abs=1e-9)
    assert "top1_accuracy" not in metrics  # an AR metric
    for key in ("codebook_usage", "isc_mean", "isc_mean_cfg1.75"):
        assert math.isfinite(metrics[key]), key

    # every generated PNG is the grid decoded alone from its class with its own generator,
    # and gFID is the Frechet distance of those images' features to the val statistics
    check_generated(out, expected, metrics, random_inception, stats)

    # another batch size measures the same: the numbers depend on the seed alone
    again = nar.scored("again", random_inception, stats, "--batch-size", "3")
    assert command_main("test", again) == 0
    other = read_metrics_json(nar.root / "work" / "again_test" / "metrics.json")["metrics"]
    for key in ("loss", "masked_accuracy", "gfid", "gfid_cfg1.75"):
        assert other[key] == pytest.approx(metrics[key], rel=1e-5), key


def test_val_validates_every_checkpoint_of_a_nar_run(nar: NARSetup, tmp_path: Path) -> None:
    options = [f"{k}:{v!r}" for k, v in nar.options.items()] + ["batch_size:4", "iters:2"]
    argv = ["nar", str(DEMO), "--work-dirs", str(tmp_path)]
    argv += ["--override", ".loop.checkpoint_interval:1", "--config-options", *options]
    assert train_main(argv) == 0
    config = tmp_path / "nar" / "nar_photos.py"
    val = ["nar", str(config), "--work-dirs", str(tmp_path), "--inception", str(tmp_path / "no")]
    assert command_main("val", val) == 0
    metrics = [
        read_metrics_json(tmp_path / "nar" / "val" / n / "metrics.json")["metrics"]
        for n in ("iter_1", "iter_2")
    ]
    assert all(0.0 <= m["masked_accuracy"] <= 1.0 for m in metrics)
    assert math.isfinite(metrics[0]["loss"]) and metrics[0]["loss"] != metrics[1]["loss"]


def test_bad_nar_evaluations_fail_in_one_line(
    nar: NARSetup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def error(argv: list[str]) -> str:
        assert command_main("test", argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines and lines[-1].startswith("error:"), lines
        return lines[-1]

    absent = str(tmp_path / "absent.pth")
    unguided = nar.argv("x", "--guidance", "2", "--inception", absent, guidance=False)
    assert "no label dropout" in error(unguided)
    assert "--ten-crop" in error(nar.argv("y", "--ten-crop", "--inception", absent))
    assert not (nar.root / "work" / "y_test").exists()  # refused before anything is written


@pytest.mark.distributed
def test_two_processes_measure_what_one_does(
    nar: NARSetup, random_inception: Path, tmp_path: Path
) -> None:
    stats = tmp_path / "stats.npz"  # written by the first run, read by the second
    assert command_main("test", nar.scored("one", random_inception, stats)) == 0
    # 9 images on 2 ranks in batches of 2: rank 1 repeats image 0 as padding
    two = nar.scored("two", random_inception, stats, "--batch-size", "2")
    assert run_distributed(command_main, 2, "test", two) == [0, 0]
    first = read_metrics_json(nar.root / "work" / "one_test" / "metrics.json")
    second = read_metrics_json(nar.root / "work" / "two_test" / "metrics.json")
    assert second["image_count"] == 9
    for key, value in first["metrics"].items():
        assert second["metrics"][key] == pytest.approx(value, rel=1e-5), key


@pytest.mark.distributed
def test_fsdp_training_and_its_visuals_on_two_ranks(nar: NARSetup, tmp_path: Path) -> None:
    # one FSDP unit per bidirectional block; the visuals decode through the sharded network
    block = masked_block_parameters(nar.config.network)
    argv = ["fsdp", str(DEMO), "--work-dirs", str(tmp_path), "--override", ".strategy.kind::fsdp"]
    argv += [f".strategy.fsdp_min_params:{block}", ".loop.visual_interval:3"]
    argv += ["--config-options", *[f"{k}:{v!r}" for k, v in nar.options.items()]]
    assert run_distributed(train_main, 2, [*argv, "iters:3", "batch_size:4"]) == [0, 0]
    assert (tmp_path / "fsdp" / "visuals" / "iter_3.png").is_file()
    merged = tmp_path / "model.safetensors"
    assert consolidate_main([str(tmp_path / "fsdp/checkpoints/iter_3"), str(merged)]) == 0
    weights = load_file(str(merged))
    assert weights.keys() == load_file(str(nar.weights)).keys()  # the whole network, no tokenizer
    assert weights["lm_head.weight"].abs().sum() > 0
