"""The ImageNet configs of the GAN families (VQGAN, CVQ-VAE, FSQ, LlamaGen's VQGAN, pixel
decoders): the options researchers vary, each landing where it says, and their mistakes.

Every value a recipe sets is checked in test_vqgan_trainer.py and test_decoder.py; here the
options around them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from vq.core.configfile import config_parameters, load_config
from vq.core.errors import UserError
from vq.train.cli import resolve_config, train_main
from vq.train.trainers.decoder import DecoderRunConfig
from vq.train.trainers.vqgan import VQGANRunConfig

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs"
TRAIN = REPO / "packages" / "train" / "src" / "vq" / "train"
MAIN_BASELINE = CONFIGS / "vqgan" / "8192_dd2_aglwg075_imagenet_ddp.py"
VQKD_DEMO = CONFIGS / "demo" / "vqkd_photos.py"

TRAINING = {"lr", "discriminator_lr", "batch_size", "iters", "image_size", "data_root",
            "strategy", "workers"}  # fmt: skip
OPTIONS = {
    "vqgan": TRAINING | {"num_codes", "code_dim"},
    "cvqvae": TRAINING | {"num_codes", "code_dim"},
    "llamagen": TRAINING | {"num_codes", "code_dim"},
    "fsq": TRAINING | {"num_codes"},  # the levels imply the code dimension
    "decoder": TRAINING | {"it_config", "it_state_dict", "decoder"},
}
IMAGENET_CONFIGS = sorted(
    p
    for family in OPTIONS
    for p in (CONFIGS / family).glob("*.py")
    if not p.name.startswith(("_", "c2i_"))  # c2i_*: LlamaGen's GPTs, AR runs
)


def options_of(path: Path, *argv: str, overrides: tuple[str, ...] = ()):
    """The config of ``path`` as ``train`` builds it from ``--config-options argv``."""
    return resolve_config(path, list(argv), list(overrides))


@pytest.mark.parametrize("path", IMAGENET_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_imagenet_config_takes_the_shared_options(path: Path) -> None:
    assert set(config_parameters(path)) == OPTIONS[path.parent.name]


def test_num_codes_option_builds_a_quantizer_of_that_size() -> None:
    config = options_of(MAIN_BASELINE, "num_codes:1024")
    assert isinstance(config, VQGANRunConfig)
    with torch.device("meta"):
        tokenizer = config.build_tokenizer()
    assert tuple(tokenizer.quantizer.codebook.shape) == (1024, 256)  # (K, D)
    assert tokenizer.num_codes == 1024


@pytest.mark.parametrize(
    "path",
    [MAIN_BASELINE, CONFIGS / "cvqvae/8192_dd2_aglwg075_imagenet_ddp.py",
     CONFIGS / "llamagen/vqgan_imagenet_ddp.py"],
    ids=lambda p: p.parent.name,
)  # fmt: skip
def test_training_options_land_where_they_say(path: Path) -> None:
    c = options_of(
        path, "num_codes:4096", "code_dim:32", "lr:1e-4*2", "discriminator_lr:3e-4",
        "batch_size:48", "iters:1000", "image_size:128", "data_root::/datasets/imagenet",
        "strategy::fsdp", "workers:2",
    )  # fmt: skip
    assert (c.model.quantizer.num_codes, c.model.quantizer.dim) == (4096, 32)
    assert c.optimization.optimizer.lr == pytest.approx(2e-4)
    assert c.discriminator_optimization.optimizer.lr == 3e-4
    assert (c.loader.batch_size, c.loader.batch_size_is_global, c.loader.workers) == (48, True, 2)
    assert c.loop.iters == 1000
    assert (c.data.root, c.data.image_size) == ("/datasets/imagenet", 128)
    assert c.strategy.kind == "fsdp"


def test_fsq_num_codes_picks_a_level_preset() -> None:
    config = options_of(CONFIGS / "fsq/8000_imagenet_ddp.py", "num_codes:64000", "lr:1e-4")
    assert config.model.quantizer.levels == [8, 8, 8, 5, 5, 5]
    assert config.model.post_encode.channels == (256, 256, 6)
    assert config.optimization.optimizer.lr == 1e-4
    with pytest.raises(UserError, match=r"num_codes 1000: FSQ has level presets for 8000, 64000"):
        options_of(CONFIGS / "fsq/8000_imagenet_ddp.py", "num_codes:1000")


@pytest.mark.parametrize(
    ("fsdp", "ddp"),
    [("vqgan/8192_dd2_aglwg075_imagenet_fsdp", "vqgan/8192_dd2_aglwg075_imagenet_ddp"),
     ("fsq/8000_imagenet_fsdp", "fsq/8000_imagenet_ddp")],
)  # fmt: skip
def test_fsdp_files_are_the_ddp_configs_with_fsdp_by_default(fsdp: str, ddp: str) -> None:
    sharded = load_config(CONFIGS / f"{fsdp}.py")
    assert sharded.strategy.kind == "fsdp"
    assert sharded == options_of(CONFIGS / f"{ddp}.py", "strategy::fsdp")
    assert options_of(CONFIGS / f"{fsdp}.py", "strategy::ddp").strategy.kind == "ddp"


@pytest.mark.parametrize("path", IMAGENET_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_wrong_strategy_is_a_user_error(path: Path) -> None:
    options = {"strategy": "zero"}
    if path.parent.name == "decoder":
        options["it_config"] = str(VQKD_DEMO)
    with pytest.raises(UserError, match=r"^option strategy 'zero': choose one of ddp, fsdp$"):
        load_config(path, options)


def test_a_wrong_option_value_ends_the_train_command_in_one_line(tmp_path, capsys) -> None:
    argv = ["x", str(MAIN_BASELINE), "--work-dirs", str(tmp_path), "--config-options"]
    assert train_main([*argv, "strategy::zero"]) == 2
    err = capsys.readouterr().err
    assert err == "error: option strategy 'zero': choose one of ddp, fsdp\n"
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("recipe", ["llamagen", "vqgan"])
def test_decoder_options_reach_the_config(recipe: str) -> None:
    path = CONFIGS / "decoder" / f"{recipe}.py"
    default = load_config(path, {"it_config": str(VQKD_DEMO)})
    assert isinstance(default, DecoderRunConfig) and default.tokenizer_weights == []
    assert default.loop.iters == (400_000 if recipe == "llamagen" else 260_000)

    c = options_of(
        path, f"it_config::{VQKD_DEMO}", "it_state_dict::work_dirs/vqkd/checkpoints/iter_9",
        "lr:2e-5", "discriminator_lr:1e-5", "batch_size:32", "iters:500", "image_size:128",
        "data_root::/datasets/imagenet", "strategy::fsdp", "workers:3",
    )  # fmt: skip
    assert c.tokenizer_weights == [Path("work_dirs/vqkd/checkpoints/iter_9")]
    assert (c.optimization.optimizer.lr, c.discriminator_optimization.optimizer.lr) == (2e-5, 1e-5)
    assert (c.loader.batch_size, c.loop.iters, c.loader.workers) == (32, 500, 3)
    assert (c.data.root, c.data.image_size, c.strategy.kind) == ("/datasets/imagenet", 128, "fsdp")
    # what an option leaves alone stays the recipe's
    assert c.gan == default.gan and c.reconstruction == default.reconstruction
    assert c.optimization.optimizer.betas == default.optimization.optimizer.betas


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


def test_the_trainers_share_the_gan_step_not_each_other() -> None:
    vqgan = _imported_modules(TRAIN / "trainers" / "vqgan.py")
    decoder = _imported_modules(TRAIN / "trainers" / "decoder.py")
    assert "vq.train.gan_step" in vqgan and "vq.train.gan_step" in decoder
    assert "vq.train.trainers.vqgan" not in decoder
    assert "vq.train.trainers.decoder" not in vqgan
