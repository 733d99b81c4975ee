"""The NAR (MaskGIT) trainer: configs, training end to end, resuming and ``sample`` (``val``
and ``test``: test_eval_nar.py), on the tiny tokenizer run of ``test_ar`` (4x4 grids of 32 codes
at 16 px) or a token file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from vq.core.configfile import dump_config, load_config
from vq.core.errors import UserError
from vq.core.parallel import _shard_units
from vq.core.seeding import seeded_generator
from vq.core.tensorfiles import read_weights
from vq.generators import MaskedNetworkConfig, build_masked_network
from vq.train.cli import resolve_config, train_main
from vq.train.data import ImageNetConfig, TokenFileConfig, to_uint8
from vq.train.proposal import token_space
from vq.train.sample import sample_main
from vq.train.tokenizer_source import load_frozen_tokenizer
from vq.train.trainers.nar import (
    NARRunConfig,
    build_masked,
    decode_tokens,
    masked_block_parameters,
)

# The tiny tokenizer run and the token file of the AR tests (imported by name, as
# test_sample does, so the resolved config stays importable in spawned processes).
sys.path.insert(0, str(Path(__file__).parent))
from test_ar import NUM_CODES, _class_token_file, _losses, make_tokenizer_run

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "configs" / "demo" / "nar_photos.py"
NAR_CONFIGS = sorted((REPO / "configs" / "nar").glob("c2i_*.py"))
TOKENIZER_OPTIONS = {"ir_config": "work_dirs/dec/llamagen.py", "ir_state_dict": "d.pth"}


@pytest.fixture(scope="module")
def tokenizer_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_tokenizer_run(tmp_path_factory.mktemp("tokenizer"))


# ------------------------------------------------------------------ configs --------


def test_there_are_four_nar_configs() -> None:
    assert [p.stem for p in NAR_CONFIGS] == [
        "c2i_medium_cfg_imagenet_ddp",
        "c2i_medium_cfg_imagenet_fsdp",
        "c2i_medium_imagenet_ddp",
        "c2i_medium_imagenet_fsdp",
    ]


@pytest.mark.parametrize("path", NAR_CONFIGS, ids=lambda p: p.stem)
def test_nar_configs_build_the_maskgit_recipe(path: Path, tmp_path: Path) -> None:
    config = load_config(path, {**TOKENIZER_OPTIONS, "it_state_dict": "t.pth"})
    assert isinstance(config, NARRunConfig) and config.trainer == "nar"
    assert config.tokenizer is not None
    assert config.tokenizer.config == Path("work_dirs/dec/llamagen.py")
    assert config.tokenizer.state_dicts == [Path("d.pth"), Path("t.pth")]  # later wins
    opt = config.optimization.optimizer
    assert (opt.kind, opt.lr, opt.betas, opt.weight_decay) == ("adamw", 1e-4, (0.9, 0.96), 0.045)
    schedule = config.optimization.schedule
    assert (schedule.kind, schedule.warmup_iters, schedule.min_lr) == ("cosine", 0, 0)
    assert config.loop.iters == 1_500_000
    assert (config.loader.batch_size, config.loader.batch_size_is_global) == (256, True)
    assert config.data == ImageNetConfig(image_size=256, augmentation="weak")
    assert config.num_classes == 1000
    assert config.network.preset == "medium" and config.network.overrides == {"dropout": 0.1}
    assert config.label_smoothing == 0.1
    s = config.sampling
    assert (s.num_steps, s.choice_temperature, s.temperature, s.top_k, s.top_p) == (
        12,
        4.5,
        1.0,
        None,
        None,
    )
    guided = "_cfg_" in path.stem
    assert config.network.label_dropout == (0.1 if guided else 0.0)
    assert s.guidance_scale == (1.75 if guided else 1.0)
    assert config.can_guide is guided
    strategy = path.stem.rsplit("_", 1)[1]
    assert config.strategy.kind == strategy
    if strategy == "fsdp":
        assert config.strategy.fsdp_min_params == masked_block_parameters(config.network)

    # the shared options land where they say
    varied = load_config(
        path,
        {**TOKENIZER_OPTIONS, "lr": 3e-4, "batch_size": 8, "iters": 100, "image_size": 128,
         "data_root": "/datasets/in1k", "workers": 2, "strategy": "ddp",
         "transformer_size": "B"},
    )  # fmt: skip
    assert (varied.optimization.optimizer.lr, varied.loader.batch_size) == (3e-4, 8)
    assert varied.loop.iters == 100 and varied.network.preset == "B"
    assert varied.data == ImageNetConfig(root="/datasets/in1k", image_size=128, augmentation="weak")
    assert (varied.loader.workers, varied.strategy.kind) == (2, "ddp")
    tokens = load_config(path, {**TOKENIZER_OPTIONS, "token_file": "t.st"})
    assert tokens.data == TokenFileConfig(path=Path("t.st"))
    with pytest.raises(UserError, match=r"^option strategy 'zero': choose one of ddp, fsdp$"):
        load_config(path, {**TOKENIZER_OPTIONS, "strategy": "zero"})
    with pytest.raises(UserError, match="ir_config"):
        load_config(path, {"iters": 10})
    (tmp_path / "resolved.py").write_text(dump_config(config))
    assert load_config(tmp_path / "resolved.py") == config


def test_fsdp_unit_size_is_one_bidirectional_block() -> None:
    # MaskGIT medium block: q, k, v, o (4 * 1024^2) + SwiGLU (3 * 1024 * 2816) + 2 RMSNorms
    medium = MaskedNetworkConfig(preset="medium")
    assert masked_block_parameters(medium) == 4 * 1024**2 + 3 * 1024 * 2816 + 2 * 1024
    tiny = MaskedNetworkConfig(preset="tiny", overrides={"depth": 3})
    with torch.device("meta"):
        model = build_masked_network(tiny, codebook_size=64, num_classes=10, grid=(4, 4))
    assert _shard_units(model, masked_block_parameters(tiny)) == list(model.layers)


def test_demo_config_builds_and_guidance_needs_label_dropout() -> None:
    config = load_config(DEMO, {"ir_config": "c.py", "ir_state_dict": "w"})
    assert isinstance(config, NARRunConfig) and config.num_classes == 9
    assert config.network.preset == "tiny" and config.sampling.guidance_scale == 1.75
    assert load_config(DEMO, {"token_file": "t.safetensors"}).tokenizer is None
    with pytest.raises(UserError, match="tokenizer is required"):
        load_config(DEMO, {})
    with pytest.raises(UserError, match="label_dropout > 0"):
        resolve_config(DEMO, ["token_file::t", "guidance:False"], [".sampling.guidance_scale:2"])


# ------------------------------------------------------------------ training -------


def test_training_on_a_token_file_lowers_the_loss(tmp_path: Path) -> None:
    tokens = _class_token_file(tmp_path / "tokens.safetensors")
    argv = ["tok", str(DEMO), "--work-dirs", str(tmp_path), "--override", ".loop.log_interval:1"]
    options = [f"token_file::{tokens}", "batch_size:8", "lr:1e-2", "iters:30"]
    assert train_main([*argv, "--config-options", *options]) == 0
    losses = _losses(tmp_path, "tok")
    assert len(losses) == 30
    assert losses[0] == pytest.approx(torch.log(torch.tensor(32.0)).item(), abs=1e-3)  # zero head
    assert sum(losses[-5:]) / 5 < 0.8 * losses[0], losses
    weights = load_file(str(tmp_path / "tok/checkpoints/iter_30/models/model.safetensors"))
    assert weights["embed_classes.weight"].shape[0] == 9 + 1  # classes and the null class
    assert weights["embed_tokens.weight"].shape[0] == NUM_CODES + 1  # codes and the mask


def _train(work: Path, name: str, tokenizer: tuple[Path, Path], iters: int, *args: str) -> int:
    """``train NAME configs/demo/nar_photos.py`` on the tiny tokenizer at 16 px (4x4 tokens).

    The cosine schedule is pinned to 16 iterations so that shorter runs share it."""
    config_file, checkpoint = tokenizer
    overrides = [".loop.log_interval:1", ".optimization.schedule.total_iters:16"]
    options = [f"ir_config::{config_file}", f"ir_state_dict::{checkpoint}", "image_size:16"]
    options += ["batch_size:4", "lr:3e-3", f"iters:{iters}", "num_steps:3"]
    argv = [
        name,
        str(DEMO),
        "--work-dirs",
        str(work),
        "--override",
        *overrides,
        ".visual_samples:2",
    ]
    return train_main([*argv, *args, "--config-options", *options])


@pytest.mark.slow
def test_training_resumes_exactly_and_never_saves_the_tokenizer(
    tokenizer_run: tuple[Path, Path], tmp_path: Path
) -> None:
    # masking and label dropout draw from the global RNG, so resuming must restore it;
    # 45 photos in batches of 4 make iteration 8 a resume in the middle of an epoch
    assert _train(tmp_path, "straight", tokenizer_run, 16) == 0
    assert _train(tmp_path, "resumed", tokenizer_run, 8) == 0
    assert _train(tmp_path, "resumed", tokenizer_run, 16, "--auto-resume") == 0

    final = tmp_path / "straight" / "checkpoints" / "iter_16" / "models"
    straight = load_file(str(final / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed/checkpoints/iter_16/models/model.safetensors"))
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key

    assert sorted(p.name for p in final.iterdir()) == ["model.safetensors"]
    assert straight.keys().isdisjoint(read_weights(tokenizer_run[1]))
    assert all(k.startswith(("embed_", "layers.", "norm.", "lm_head.")) for k in straight)
    assert len(_losses(tmp_path, "straight")) == 16
    assert (tmp_path / "straight" / "visuals" / "iter_16.png").is_file()


# ------------------------------------------------------------------ sample ---------


def test_sample_draws_what_parallel_decoding_draws(
    tokenizer_run: tuple[Path, Path], tmp_path: Path
) -> None:
    config_file, checkpoint = tokenizer_run
    options = {"ir_config": str(config_file), "ir_state_dict": str(checkpoint), "image_size": 16}
    config = load_config(DEMO, options)
    tokenizer = load_frozen_tokenizer(config_file, [checkpoint])
    torch.manual_seed(1)
    network = build_masked(config, token_space(config, tokenizer)).eval()
    with torch.no_grad():  # peaked, class-dependent distributions instead of a zero head
        for p in network.parameters():
            p.normal_(0.0, 0.3)
    weights = tmp_path / "network.safetensors"
    save_file(network.state_dict(), str(weights))

    argv = ["s", str(DEMO), "--load-model-from", str(weights), "--work-dirs", str(tmp_path)]
    argv += ["--classes", "2", "5", "--per-class", "2", "--batch-size", "3", "--seed", "4"]
    argv += ["--num-steps", "3", "--config-options"]
    argv += [f"ir_config::{config_file}", f"ir_state_dict::{checkpoint}", "image_size:16"]
    assert sample_main(argv) == 0
    with np.load(tmp_path / "s" / "samples.npz") as f:
        images, labels = f["arr_0"], f["arr_1"]
    assert images.shape == (4, 16, 16, 3) and labels.tolist() == [2, 2, 5, 5]
    assert sorted(p.stem for p in (tmp_path / "s" / "samples").glob("*.png")) == [
        "2_0",
        "2_1",
        "5_0",
        "5_1",
    ]

    sampling = config.sampling.model_copy(update={"num_steps": 3})
    expected = []
    for b, classes in enumerate([[2, 2, 5], [5]]):
        grids = decode_tokens(
            network, torch.tensor(classes), sampling, seeded_generator("cpu", 4, b)
        )
        expected.append(to_uint8(tokenizer.decode(grids)).permute(0, 2, 3, 1).numpy())
    assert np.array_equal(images, np.concatenate(expected))
    assert len({images[n].tobytes() for n in range(4)}) > 1  # not one image repeated
