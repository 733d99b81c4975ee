"""Frozen teachers: registry sizes, weight files, frozen-in-a-parent behaviour, targets.

Networks are the real teacher classes shrunk through ``arch`` (a 1-block, 32-wide ViT; a
ConvNeXt of width 8-64) so that every loading path runs in well under a second; the real
sizes are checked on the meta device.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from safetensors.torch import save_file
from torch import nn

from vq.core.errors import UserError
from vq.tokenizers.teachers import TEACHERS, Teacher, TeacherConfig, TeacherName, build_teacher
from vq.tokenizers.teachers.base import import_optional

pytest.importorskip("timm")

SMALL_VIT = {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 32}
SMALL = {
    "clip": {**SMALL_VIT, "num_classes": 16},  # the head is CLIP's projection
    "dino": SMALL_VIT,
    "mae": SMALL_VIT,
    "evaclip": {**SMALL_VIT, "num_classes": 16},
    "openclip_L_14": {**SMALL_VIT, "patch_size": 8, "num_classes": 16},
    "vit": {"num_layers": 1, "num_heads": 2, "hidden_dim": 32, "mlp_dim": 64},
    "convnext": {"widths": (8, 16, 32, 64), "depths": (1, 1, 1, 1)},
    "efficientnet_lite0": None,  # 4.7M parameters: small as it is
}
# (dim, patch size, native image size) of the real networks.
REAL_SIZES = {
    "clip": (512, 16, 224),
    "dino": (768, 16, 224),
    "mae": (768, 16, 224),
    "vit": (768, 16, 224),
    "convnext": (1024, 16, 224),
    "openclip_L_14": (768, 14, 224),
    "openclip_H_14": (1024, 14, 224),
    "openclip_bigG_14": (1280, 14, 224),
    "evaclip": (768, 16, 224),
    "efficientnet_lite0": (112, 16, 224),
}


def small(name: str, weights: Path | None = None, **fields) -> Teacher:
    fields.setdefault("image_size", 64 if name == "efficientnet_lite0" else 32)
    config = TeacherConfig(name=name, weights=weights, **fields)
    return build_teacher(config, arch=SMALL[name])


def images(batch: int = 2, size: int = 40) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)


def save_weights(teacher: Teacher, path: Path) -> Path:
    state = {k: v.contiguous() for k, v in teacher.network.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)
    return path


def test_registry_covers_the_reference_teachers() -> None:
    assert set(TEACHERS) == set(REAL_SIZES) == set(get_args(TeacherName))


@pytest.mark.parametrize("name", sorted(REAL_SIZES))
def test_real_architectures_build_with_the_documented_sizes(name: str) -> None:
    with torch.device("meta"):
        teacher = build_teacher(TeacherConfig(name=name, weights=None))
    assert (teacher.dim, teacher.patch_size, teacher.image_size) == REAL_SIZES[name]
    assert teacher.grid_size == 224 // REAL_SIZES[name][1]


def test_clip_without_projection_gives_768_d_tokens() -> None:
    with torch.device("meta"):
        teacher = build_teacher(TeacherConfig(name="clip", weights=None, with_projection=False))
    assert teacher.dim == 768


@pytest.mark.parametrize("name", sorted(SMALL))
def test_weights_reload_from_a_local_file(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = small(name)
    features = teacher(images())
    grid = teacher.image_size // teacher.patch_size
    assert features.shape == (2, teacher.dim, grid, grid)
    suffix = ".pth" if name in ("vit", "convnext") else ".safetensors"
    path = save_weights(teacher, tmp_path / f"{name}{suffix}")
    torch.manual_seed(1)  # a differently initialised network ...
    assert not torch.equal(small(name)(images()), features)
    reloaded = small(name, weights=path)  # ... gets the saved weights back
    assert torch.equal(reloaded(images()), features)


def test_default_weights_path_and_missing_file_error(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = TeacherConfig(name="dino")
    assert config.weights == Path("pretrained/teachers/dino.safetensors")
    with pytest.raises(UserError) as error:
        build_teacher(config)
    message = str(error.value)
    assert "pretrained/teachers/dino.safetensors" in message
    assert "huggingface.co/timm/vit_base_patch16_224.dino" in message  # where to get it


def test_a_checkpoint_of_another_network_is_a_user_error(tmp_path: Path) -> None:
    path = save_weights(small("dino"), tmp_path / "dino.safetensors")
    config = TeacherConfig(name="mae", weights=path, image_size=32)
    with pytest.raises(UserError, match="does not fit"):
        build_teacher(config, arch={**SMALL_VIT, "embed_dim": 64})


def test_config_rejects_unknown_teachers_and_projections_that_do_not_exist() -> None:
    with pytest.raises(ValidationError, match="clip"):  # lists the choices
        TeacherConfig(name="clip_vit", weights=None)
    with pytest.raises(UserError, match="no projection"):
        build_teacher(TeacherConfig(name="dino", weights=None, with_projection=True))


def test_missing_optional_package_names_the_install_command(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` fail
    with pytest.raises(UserError, match=r"uv sync --extra teachers"):
        import_optional("timm")
    with pytest.raises(UserError, match=r"vq-tokenizers\[teachers\]"):
        small("dino")


@pytest.mark.slow  # a fresh interpreter imports torch
def test_importing_the_package_imports_no_optional_dependency() -> None:
    code = (
        "import sys, vq.tokenizers, vq.tokenizers.teachers, vq.tokenizers.vit, "
        "vq.tokenizers.optim_groups\n"
        "loaded = {'timm', 'open_clip', 'torchvision'} & set(sys.modules)\n"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class Student(nn.Module):
    """A parent model that holds a teacher next to its own trainable layer."""

    def __init__(self, teacher: Teacher) -> None:
        super().__init__()
        self.teacher = teacher
        self.head = nn.Linear(4, 4)


def test_a_teacher_is_invisible_to_its_parents_checkpoints_and_optimizers() -> None:
    student = Student(small("dino"))
    assert set(student.state_dict()) == {"head.weight", "head.bias"}
    assert [name for name, _ in student.named_parameters()] == ["head.weight", "head.bias"]
    student.load_state_dict(Student(small("mae")).state_dict())  # strict: expects nothing
    student.requires_grad_(True)
    assert not any(p.requires_grad for p in student.teacher.network.parameters())


def test_a_teacher_stays_in_eval_mode_and_keeps_its_weights() -> None:
    teacher = small("convnext")  # has stochastic depth, active only in training mode
    before = teacher(images())
    student = Student(teacher).train()
    assert not teacher.training
    assert not any(module.training for module in teacher.network.modules())
    student.apply(lambda m: nn.init.zeros_(m.weight) if hasattr(m, "weight") else None)
    assert torch.equal(teacher(images()), before)  # neither re-initialised nor stochastic


def test_a_teacher_follows_its_parent_across_dtypes_and_gives_no_gradients() -> None:
    student = Student(small("dino")).to(torch.float64)
    assert all(p.dtype == torch.float64 for p in student.teacher.network.parameters())
    features = student.teacher(images())
    assert features.dtype == torch.float64
    assert not features.requires_grad
    with pytest.raises(TypeError, match="uint8"):
        student.teacher(images().float())


def test_torchvision_vit_targets_are_the_patch_tokens() -> None:
    teacher = small("vit")
    captured = {}
    teacher.network.encoder.register_forward_hook(
        lambda module, args, output: captured.update(tokens=output)
    )
    teacher.network(teacher.preprocess(images()))  # the network's own forward
    tokens = captured["tokens"]  # (B, 1 + h*w, C), cls first
    targets = teacher(images()).flatten(2).transpose(1, 2)  # (B, h*w, C)
    torch.testing.assert_close(targets, tokens[:, 1:])
    assert not torch.allclose(targets, tokens[:, :-1])  # the reference's shifted targets


def test_timm_vit_targets_are_the_normed_patch_tokens() -> None:
    teacher = small("dino")
    x = teacher.preprocess(images())
    tokens = teacher.network.forward_features(x)  # (B, 1 + h*w, C)
    targets = teacher(images()).flatten(2).transpose(1, 2)
    torch.testing.assert_close(targets, tokens[:, 1:])


def test_clip_projection_is_the_head_applied_to_every_patch_token(tmp_path: Path) -> None:
    projected = small("clip")
    path = save_weights(projected, tmp_path / "clip.safetensors")
    plain = small("clip", weights=path, with_projection=False)
    assert (projected.dim, plain.dim) == (16, 32)
    head = projected.network.head
    expected = F.linear(plain(images()).permute(0, 2, 3, 1), head.weight, head.bias)
    torch.testing.assert_close(projected(images()), expected.permute(0, 3, 1, 2))


def test_vit_teachers_run_at_other_resolutions(tmp_path: Path) -> None:
    for name in ("clip", "vit"):  # timm resizes on the fly, torchvision on load
        path = save_weights(small(name), tmp_path / f"{name}.pth")
        teacher = small(name, weights=path, image_size=64)
        assert teacher(images()).shape == (2, teacher.dim, 4, 4)


def test_convnext_upsamples_its_stride_32_map_to_the_stride_16_grid() -> None:
    teacher = small("convnext")
    x = teacher.preprocess(images())
    stage4 = teacher.network.features(x)  # (B, 64, 1, 1) at 32 px
    expected = F.interpolate(stage4, size=(2, 2), mode="bicubic", align_corners=False)
    torch.testing.assert_close(teacher(images()), expected)
