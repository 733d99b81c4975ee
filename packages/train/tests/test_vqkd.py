"""VQ-KD training: configs, teacher widths, a real distillation that learns, exact resuming."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from einops import rearrange
from safetensors.torch import load_file

from vq.core import launch
from vq.core.configfile import config_parameters, load_config, parse_assignments
from vq.core.errors import UserError
from vq.core.loop import Run, train
from vq.core.seeding import seed_everything
from vq.tokenizers.quantizers import CodebookHistogram
from vq.tokenizers.teachers import TeacherConfig, build_teacher
from vq.train.cli import train_main
from vq.train.data import PhotosConfig, build_dataset, collate
from vq.train.distillation import cosine_distillation_loss
from vq.train.trainers.vqkd import TEACHER_DIMS, VQKDRunConfig, VQKDTrainer

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "configs" / "demo" / "vqkd_photos.py"
IMAGENET = {
    "clip_8192": ("clip", 8192),
    "dino_8192": ("dino", 8192),
    "mae_8192": ("mae", 8192),
    "vit_8192": ("vit", 8192),
    "convnext_8192": ("convnext", 8192),
    "openclip_L_14_8192": ("openclip_L_14", 8192),
    "openclip_bigG_14_8192": ("openclip_bigG_14", 8192),
    "evaclip_8192": ("evaclip", 8192),
    "vit_16384": ("vit", 16384),
}


@pytest.mark.parametrize(
    ("name", "strategy"),
    [(f"{name}_imagenet_ddp", "ddp") for name in IMAGENET]
    + [(f"{name}_imagenet_fsdp", "fsdp") for name in ("clip_8192", "openclip_bigG_14_8192")],
)
def test_every_config_builds_the_reference_recipe(name: str, strategy: str) -> None:
    config = load_config(REPO / "configs" / "vqkd" / f"{name}.py", {})
    assert isinstance(config, VQKDRunConfig) and config.trainer == "vqkd"
    teacher, num_codes = IMAGENET[name.removesuffix("_imagenet_ddp").removesuffix("_imagenet_fsdp")]
    assert config.teacher.name == teacher
    assert config.teacher.weights == Path(f"pretrained/teachers/{teacher}").with_suffix(
        ".pth" if teacher in ("vit", "convnext") else ".safetensors"
    )
    assert config.model.quantizer.num_codes == num_codes and config.model.quantizer.dim == 32
    assert config.model.feature_dim == TEACHER_DIMS[teacher]
    assert config.strategy.kind == strategy
    assert (config.loop.iters, config.loader.batch_size, config.loader.batch_size_is_global) == (
        250_000,
        512,
        True,
    )
    assert (config.data.kind, config.data.image_size, config.data.augmentation) == (
        "imagenet",
        224,
        "default",
    )
    opt = config.optimization.optimizer
    assert (opt.kind, opt.lr, opt.weight_decay, opt.betas, opt.eps) == (
        "adamw",
        2e-4,
        1e-4,
        (0.9, 0.99),
        1e-8,
    )
    schedule = config.optimization.schedule
    assert (
        schedule.kind,
        schedule.warmup_iters,
        schedule.warmup_start_factor,
        schedule.min_lr,
    ) == (
        "cosine",
        25_000,
        1e-8,
        1e-5,
    )
    with torch.device("meta"):  # the full ViT-B, without spending time on its init
        tokenizer = config.build_tokenizer()
    assert tokenizer.num_codes == num_codes and tokenizer.grid_size(224) == (14, 14)


OPTIONS = {"num_codes", "code_dim", "lr", "batch_size", "iters", "image_size", "data_root",
           "strategy", "workers", "teacher_weights"}  # fmt: skip


def test_every_imagenet_config_takes_the_shared_options() -> None:
    configs = sorted((REPO / "configs" / "vqkd").glob("*_imagenet_*.py"))
    assert len(configs) == len(IMAGENET) + 2  # + the two _fsdp files
    for path in configs:
        assert set(config_parameters(path)) == OPTIONS, path.name


def test_config_options_change_what_they_name(tmp_path: Path) -> None:
    """``--config-options`` as typed on the command line, each landing where it says."""
    argv = ["num_codes:16384", "code_dim:64", "lr:1e-4", "batch_size:256", "iters:1000",
            "image_size:256", "data_root::/datasets/imagenet", "strategy::fsdp", "workers:4",
            f"teacher_weights::{tmp_path / 'dino.pth'}"]  # fmt: skip
    options = parse_assignments(argv)
    config = load_config(REPO / "configs/vqkd/dino_8192_imagenet_ddp.py", options)
    assert isinstance(config, VQKDRunConfig)
    quantizer = config.model.quantizer
    assert (quantizer.num_codes, quantizer.dim) == (16384, 64)
    # The code width is the encoder's output and the decoder's input.
    assert config.model.encoder.out_dim == config.model.decoder.in_chans == 64
    assert config.model.feature_dim == TEACHER_DIMS["dino"]
    assert config.optimization.optimizer.lr == 1e-4 and config.optimization.schedule.min_lr == 1e-5
    assert (config.loader.batch_size, config.loader.workers, config.loop.iters) == (256, 4, 1000)
    assert (config.data.root, config.data.image_size, config.image_size) == (
        "/datasets/imagenet",
        256,
        256,
    )
    assert config.strategy.kind == "fsdp" and config.teacher.weights == tmp_path / "dino.pth"
    with torch.device("meta"):
        assert config.build_tokenizer().grid_size(256) == (16, 16)

    fsdp = REPO / "configs/vqkd/clip_8192_imagenet_fsdp.py"
    assert load_config(fsdp, {"strategy": "ddp"}).strategy.kind == "ddp"
    random_teacher = load_config(fsdp, {"teacher_weights": None})
    assert isinstance(random_teacher, VQKDRunConfig) and random_teacher.teacher.weights is None


def test_a_wrong_strategy_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = REPO / "configs/vqkd/clip_8192_imagenet_ddp.py"
    with pytest.raises(UserError, match=r"^option strategy 'zero': choose one of ddp, fsdp$"):
        load_config(path, {"strategy": "zero"})
    argv = ["x", str(path), "--work-dirs", str(tmp_path), "--config-options", "strategy::zero"]
    assert train_main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: option strategy 'zero': choose one of ddp, fsdp"
    )


@pytest.mark.slow  # imports timm
def test_teacher_widths_are_those_of_the_teachers() -> None:
    """``TEACHER_DIMS`` against the real architectures (built on the meta device)."""
    with torch.device("meta"):
        for name, dim in TEACHER_DIMS.items():
            assert build_teacher(TeacherConfig(name=name, weights=None)).dim == dim, name


def test_missing_teacher_weights_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "clip.safetensors"
    argv = ["x", str(REPO / "configs/vqkd/clip_8192_imagenet_ddp.py"), "--work-dirs", str(tmp_path),
            "--override", ".data:dict(kind='photos',image_size=32)", ".loader.batch_size:4",
            f".teacher.weights::{missing}"]  # fmt: skip
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: teacher 'clip': weights file")
    assert str(missing) in err and "huggingface.co/timm/vit_base_patch16_clip_224.openai" in err


def _train_demo(work_dir: Path, **options: Any) -> tuple[VQKDTrainer, list[dict[str, float]]]:
    """Train the demo config in-process; returns the trainer and the per-step logs."""
    config = load_config(DEMO, options)
    device = launch.init_process_group()
    try:
        seed_everything(0)
        run = Run(config=config, work_dir=work_dir, device=device, seed=0)
        trainer = VQKDTrainer(config, run)
        logs: list[dict[str, float]] = []
        step = trainer.step

        def logged_step(batch: dict[str, Any], iteration: int) -> dict[str, Any]:
            out = step(batch, iteration)
            logs.append({k: float(torch.as_tensor(v).detach()) for k, v in out.items()})
            return out

        trainer.step = logged_step  # type: ignore[method-assign]
        train(run, trainer)
    finally:
        launch.destroy_process_group()
    return trainer, logs


@pytest.mark.slow
def test_distilling_efficientnet_lowers_the_loss_and_uses_the_codebook(tmp_path: Path) -> None:
    trainer, logs = _train_demo(tmp_path, iters=20, num_codes=16, lr=1e-3)
    losses = [log["cosine_r_loss"] for log in logs]
    first, last = sum(losses[:3]) / 3, sum(losses[-5:]) / 5
    assert first > 0.9, losses  # a random decoder is uncorrelated with the teacher
    assert last < 0.8 * first, losses
    assert {"commitment_loss", "codebook_usage", "codebook_perplexity", "lr"} <= logs[-1].keys()

    photos = build_dataset(PhotosConfig(image_size=32), "train")  # no augmentation
    batch = collate([photos[i] for i in range(len(photos))])
    tokenizer = trainer.tokenizer.eval()
    with torch.no_grad():
        ids = tokenizer.encode(batch["image"])  # (45, 4, 4)
        prediction = tokenizer.predict_features(ids)  # (45, 112, 4, 4)
        target = trainer.targets(batch["original_image"], (4, 4))
    histogram = CodebookHistogram(tokenizer.num_codes)
    histogram.update(ids)
    assert histogram.usage() >= 0.5 and histogram.perplexity() > 4.0, histogram.counts
    assert cosine_distillation_loss(prediction, target) < 0.8 * first

    # The targets are the teacher's own patch grid, token for token: the same numbers as an
    # independent EfficientNet-Lite0 (timm's feature extractor, stride-16 map) on the same
    # weights, preprocessed by hand (mean = std = 127.5, bicubic to 64 px).
    timm = pytest.importorskip("timm")
    reference = timm.create_model(
        "tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(3,)
    ).eval()
    reference.load_state_dict(trainer.teacher.network.state_dict(), strict=False)
    x = (batch["original_image"].float() - 127.5) / 127.5
    x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bicubic", align_corners=False)
    with torch.no_grad():
        (expected,) = reference(x)  # (45, 112, 4, 4)
    torch.testing.assert_close(target, expected, rtol=1e-4, atol=1e-4)
    shifted = rearrange(
        rearrange(expected, "b c h w -> b (h w) c").roll(1, dims=1), "b (h w) c -> b c h w", h=4
    )
    assert cosine_distillation_loss(target, shifted) > 0.3  # a shift by one token is no detail


@pytest.mark.slow
def test_resumed_run_is_bit_identical(tmp_path: Path) -> None:
    common = ["--override", ".optimization.schedule.total_iters:6", ".loop.checkpoint_interval:3",
              "--config-options", "num_codes:16"]  # fmt: skip

    def run(name: str, iters: int, *extra: str) -> None:
        argv = [name, str(DEMO), "--work-dirs", str(tmp_path), *common, f"iters:{iters}", *extra]
        assert train_main(argv) == 0

    run("straight", 6)
    run("resumed", 3)
    run("resumed", 6, "--auto-resume")
    straight = load_file(tmp_path / "straight/checkpoints/iter_6/models/model.safetensors")
    resumed = load_file(tmp_path / "resumed/checkpoints/iter_6/models/model.safetensors")
    assert straight.keys() == resumed.keys()
    assert "quantizer.codebook" in straight  # the EMA codebook is saved, the teacher is not
    assert not any(key.startswith("teacher") for key in straight)
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    initial = load_file(tmp_path / "resumed/checkpoints/iter_3/models/model.safetensors")
    assert not torch.equal(initial["quantizer.codebook"], resumed["quantizer.codebook"])
