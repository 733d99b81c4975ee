"""Every ImageNet config takes the options docs/recipes.md promises, under the same names."""

from __future__ import annotations

from pathlib import Path

import pytest

from vq.core.configfile import config_parameters

REPO = Path(__file__).resolve().parents[3]
IMAGENET_CONFIGS = sorted(
    p
    for pattern in ("*/*imagenet*.py", "decoder/*.py")  # decoders train on ImageNet too
    for p in (REPO / "configs").glob(pattern)
    if not p.name.startswith("_")
)
SHARED = {"lr", "batch_size", "iters", "image_size", "data_root", "strategy", "workers"}
# what each family adds: the codebook, the second player, the frozen stages' weights
FAMILY = {
    "vqgan": {"num_codes", "code_dim", "discriminator_lr"},
    "cvqvae": {"num_codes", "code_dim", "discriminator_lr"},
    "llamagen": {"num_codes", "code_dim", "discriminator_lr"},
    "fsq": {"num_codes", "discriminator_lr"},  # the levels imply the width
    "vqkd": {"num_codes", "code_dim", "teacher_weights"},
    "cluster": {"num_codes", "teacher_weights"},  # a code's width is the teacher's
    "decoder": {"it_config", "it_state_dict", "discriminator_lr"},
    "ar": {"ir_config", "ir_state_dict", "it_state_dict"},
    "probe": {"it_config", "it_state_dict", "features"},
}


def family_of(path: Path) -> str:
    """The family whose options a config takes: its folder's, except LlamaGen's GPT runs
    (``llamagen/c2i_*``: AR runs) and the ablations of ``exps/``, named after the family
    whose config they vary (``exps/llamagen_vqgan_...``)."""
    if path.parent.name == "exps":
        return path.name.split("_", 1)[0]
    if path.parent.name == "llamagen" and path.name.startswith("c2i_"):
        return "ar"
    return path.parent.name


def test_every_family_with_imagenet_configs_is_covered() -> None:
    assert {family_of(p) for p in IMAGENET_CONFIGS} <= set(FAMILY) | {"nar"}


@pytest.mark.parametrize("path", IMAGENET_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_imagenet_configs_take_the_shared_options(path: Path) -> None:
    expected = SHARED | FAMILY.get(family_of(path), FAMILY["ar"])
    missing = expected - set(config_parameters(path))
    assert not missing, f"{path.relative_to(REPO)} lacks the options {sorted(missing)}"
