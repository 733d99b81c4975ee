"""The ``sample`` command on a tiny guided LLaMA over the tiny tokenizer of ``test_ar``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from vq.core.configfile import load_config
from vq.core.seeding import seeded_generator
from vq.core.testing import run_distributed
from vq.generators import generate
from vq.train.data import to_uint8
from vq.train.sample import sample_main
from vq.train.tokenizer_source import load_frozen_tokenizer
from vq.train.trainers.ar import build_network, token_space

# The tiny tokenizer run is shared with the trainer tests; importing it by name (not through
# pytest's importlib mode) keeps its resolved config importable in spawned processes too.
sys.path.insert(0, str(Path(__file__).parent))
from test_ar import DEMO, make_tokenizer_run


class Setup:
    def __init__(self, root: Path, guidance: bool) -> None:
        self.root = root
        self.tokenizer_config, self.tokenizer_weights = make_tokenizer_run(root / "tokenizer")
        self.options = [
            f"ir_config::{self.tokenizer_config}",
            f"ir_state_dict::{self.tokenizer_weights}",
            "image_size:16",
            f"guidance:{guidance}",
        ]
        self.config = load_config(
            DEMO,
            {
                "ir_config": str(self.tokenizer_config),
                "ir_state_dict": str(self.tokenizer_weights),
                "image_size": 16,
                "guidance": guidance,
            },
        )
        tokenizer = load_frozen_tokenizer(self.tokenizer_config, [self.tokenizer_weights])
        self.space = token_space(self.config, tokenizer)
        torch.manual_seed(1)
        network = build_network(self.config, self.space)
        with torch.no_grad():  # peaked, class-dependent distributions instead of a zero head
            for p in network.parameters():
                p.normal_(0.0, 0.3)
        self.weights = root / "network.safetensors"
        save_file(network.state_dict(), str(self.weights))

    def argv(
        self, name: str, *flags: str, weights: Path | None = None, **options: str
    ) -> list[str]:
        """``sample`` arguments; ``options`` replace config options (e.g. guidance="False")."""
        config_options = [o for o in self.options if o.split(":")[0] not in options]
        config_options += [f"{k}:{v}" for k, v in options.items()]
        return [
            name,
            str(DEMO),
            "--load-model-from",
            str(weights or self.weights),
            "--work-dirs",
            str(self.root / "work"),
            *flags,
            "--config-options",
            *config_options,
        ]

    def npz(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        with np.load(self.root / "work" / name / "samples.npz") as f:
            return f["arr_0"], f["arr_1"]


@pytest.fixture(scope="module")
def guided(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return Setup(tmp_path_factory.mktemp("guided"), guidance=True)


def test_sample_writes_pngs_and_an_npz_of_the_drawn_images(guided: Setup) -> None:
    flags = ["--classes", "0", "3", "3", "--per-class", "2", "--batch-size", "4", "--seed", "5"]
    flags += ["--temperature", "0.9", "--top-k", "12", "--top-p", "0.95"]
    assert sample_main(guided.argv("a", *flags)) == 0
    images, labels = guided.npz("a")
    assert images.shape == (6, 16, 16, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0, 0, 3, 3, 3, 3] and labels.dtype == np.int64

    names = ["0_0", "0_1", "3_0", "3_1", "3_2", "3_3"]
    folder = guided.root / "work" / "a" / "samples"
    assert sorted(p.stem for p in folder.glob("*.png")) == names
    for n, name in enumerate(names):
        assert np.array_equal(np.asarray(Image.open(folder / f"{name}.png")), images[n])

    # known answer: the same two batches drawn directly with generate + decode
    tokenizer = load_frozen_tokenizer(guided.tokenizer_config, [guided.tokenizer_weights])
    network = build_network(guided.config, guided.space)
    network.load_state_dict(load_file(str(guided.weights)))
    expected = []
    for b, classes in enumerate([[0, 0, 3, 3], [3, 3]]):
        tokens = generate(
            network,
            torch.tensor(classes),
            guided.space.grid,
            guided.space.codebook_size,
            9,
            guidance_scale=1.75,
            temperature=0.9,
            top_k=12,
            top_p=0.95,
            generator=seeded_generator("cpu", 5, b),
        )
        expected.append(to_uint8(tokenizer.decode(tokens)).permute(0, 2, 3, 1).numpy())
    assert np.array_equal(images, np.concatenate(expected))
    assert len({images[n].tobytes() for n in range(6)}) > 1  # not one image repeated


def test_sample_is_reproducible_for_a_seed(guided: Setup) -> None:
    flags = ["--num-classes", "2", "--per-class", "2"]
    assert sample_main(guided.argv("s1", *flags, "--seed", "7")) == 0
    assert sample_main(guided.argv("s2", *flags, "--seed", "7")) == 0
    assert sample_main(guided.argv("s3", *flags, "--seed", "8")) == 0
    first, labels = guided.npz("s1")
    assert labels.tolist() == [0, 0, 1, 1]
    assert np.array_equal(first, guided.npz("s2")[0])
    assert not np.array_equal(first, guided.npz("s3")[0])


def test_bad_sample_requests_fail_in_one_line(
    guided: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def error(argv: list[str]) -> str:
        assert sample_main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()  # info logs, then the error
        assert [line for line in lines if line.startswith("error:")] == lines[-1:], lines
        return lines[-1]

    assert "classes 0..8" in error(guided.argv("x", "--classes", "2", "9"))
    assert "--num-classes must be in [1, 9]" in error(guided.argv("x", "--num-classes", "10"))
    assert "--per-class" in error(guided.argv("x", "--per-class", "0"))
    assert "top_p" in error(guided.argv("x", "--top-p", "1.5"))

    missing = tmp_path / "missing.safetensors"
    assert str(missing) in error(guided.argv("x", weights=missing))
    # the tokenizer's checkpoint instead of the network's
    wrong = guided.argv("x", weights=guided.tokenizer_weights)
    assert "does not fit the network" in error(wrong)
    (tmp_path / "sharded" / "dcp").mkdir(parents=True)
    assert "consolidate" in error(guided.argv("x", weights=tmp_path / "sharded"))
    unguided = guided.argv("x", "--guidance", "1.5", guidance="False")
    assert "without a null class" in error(unguided)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_draw_the_same_images_as_one(guided: Setup) -> None:
    flags = ["--num-classes", "4", "--per-class", "2", "--batch-size", "3", "--seed", "3"]
    assert run_distributed(sample_main, 2, guided.argv("two", *flags)) == [0, 0]
    assert sample_main(guided.argv("one", *flags)) == 0
    two, one = guided.npz("two"), guided.npz("one")
    assert np.array_equal(two[0], one[0]) and np.array_equal(two[1], one[1])
