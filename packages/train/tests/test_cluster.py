"""Cluster training: configs, a real codebook fitted to EfficientNet-Lite0 features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from vq.core import launch
from vq.core.configfile import config_parameters, load_config, parse_assignments
from vq.core.errors import UserError
from vq.core.loop import Run, train
from vq.core.seeding import seed_everything
from vq.core.testing import run_distributed
from vq.tokenizers.quantizers import CodebookHistogram
from vq.train.cli import consolidate_main, train_main
from vq.train.data import PhotosConfig, build_dataset, collate
from vq.train.trainers.cluster import TEACHER_DIMS, ClusterRunConfig, ClusterTrainer

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "configs" / "demo" / "cluster_photos.py"


@pytest.mark.parametrize(
    ("name", "teacher", "strategy"),
    [(f"{t}_8192_imagenet_ddp", t, "ddp") for t in ("clip", "dino", "mae", "vit")]
    + [("clip_8192_imagenet_fsdp", "clip", "fsdp")],
)
def test_every_config_builds_the_reference_recipe(name: str, teacher: str, strategy: str) -> None:
    config = load_config(REPO / "configs" / "cluster" / f"{name}.py", {})
    assert isinstance(config, ClusterRunConfig) and config.trainer == "cluster"
    model = config.model
    assert model.teacher.name == teacher and model.teacher.with_projection is False
    assert model.teacher.image_size == 256 and model.teacher.weights is not None
    q = model.quantizer
    assert (q.num_codes, q.dim, q.distance, q.init, q.update) == (
        8192,
        768,
        "cosine",
        "uniform",
        "gradient",
    )
    assert q.resolved_codebook_weight == 1.0 and q.commitment_weight == 0.0 and q.cvq.sync
    assert TEACHER_DIMS[teacher] == 768
    assert config.strategy.kind == strategy
    assert (config.loop.iters, config.loader.batch_size, config.loader.batch_size_is_global) == (
        100_000,
        256,
        True,
    )
    assert (config.data.kind, config.data.image_size, config.data.augmentation) == (
        "imagenet",
        256,
        "strong",
    )
    opt = config.optimization
    assert (opt.optimizer.kind, opt.optimizer.lr, opt.optimizer.betas) == (
        "adam",
        5.4e-5,
        (0.5, 0.9),
    )
    assert opt.schedule.kind == "constant" and opt.optimizer.weight_decay == 0.0


# The VQ-KD configs' options but ``code_dim``: a code's width is the teacher's.
OPTIONS = {"num_codes", "lr", "batch_size", "iters", "image_size", "data_root", "strategy",
           "workers", "teacher_weights"}  # fmt: skip


def test_every_imagenet_config_takes_the_shared_options() -> None:
    configs = sorted((REPO / "configs" / "cluster").glob("*_imagenet_*.py"))
    assert len(configs) == 5
    for path in configs:
        assert set(config_parameters(path)) == OPTIONS, path.name


def test_config_options_change_what_they_name(tmp_path: Path) -> None:
    """``--config-options`` as typed on the command line, each landing where it says."""
    argv = ["num_codes:16384", "lr:1e-4", "batch_size:128", "iters:1000", "image_size:224",
            "data_root::/datasets/imagenet", "strategy::fsdp", "workers:4",
            f"teacher_weights::{tmp_path / 'vit.pth'}"]  # fmt: skip
    config = load_config(REPO / "configs/cluster/vit_8192_imagenet_ddp.py", parse_assignments(argv))
    assert isinstance(config, ClusterRunConfig)
    quantizer, teacher = config.model.quantizer, config.model.teacher
    assert (quantizer.num_codes, quantizer.dim) == (16384, TEACHER_DIMS["vit"])
    assert config.optimization.optimizer.lr == 1e-4
    assert (config.loader.batch_size, config.loader.workers, config.loop.iters) == (128, 4, 1000)
    assert (config.data.root, config.data.image_size) == ("/datasets/imagenet", 224)
    # image_size is the teacher's input too: 224 px, 14x14 tokens of a patch-16 teacher.
    assert (teacher.image_size, teacher.weights, teacher.with_projection) == (
        224,
        tmp_path / "vit.pth",
        False,
    )
    assert config.strategy.kind == "fsdp"

    fsdp = REPO / "configs/cluster/clip_8192_imagenet_fsdp.py"
    assert load_config(fsdp, {"strategy": "ddp"}).strategy.kind == "ddp"
    with pytest.raises(UserError, match=r"^option strategy 'zero': choose one of ddp, fsdp$"):
        load_config(fsdp, {"strategy": "zero"})
    with pytest.raises(UserError, match="does not take option 'code_dim'"):
        load_config(fsdp, {"code_dim": 64})


@pytest.mark.slow  # imports timm
def test_unprojected_teacher_widths_are_those_of_the_teachers() -> None:
    from vq.tokenizers.teachers import TeacherConfig, build_teacher

    with torch.device("meta"):
        for name, dim in TEACHER_DIMS.items():
            config = TeacherConfig(name=name, weights=None, with_projection=False)
            assert build_teacher(config).dim == dim, name


def test_missing_teacher_weights_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "dino.safetensors"
    argv = ["x", str(REPO / "configs/cluster/dino_8192_imagenet_ddp.py"), "--work-dirs",
            str(tmp_path), "--override", ".data:dict(kind='photos',image_size=32)",
            f".model.teacher.weights::{missing}"]  # fmt: skip
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: teacher 'dino': weights file") and str(missing) in err


@pytest.mark.slow
def test_codebook_fits_efficientnet_features_and_stays_in_use(tmp_path: Path) -> None:
    config = load_config(DEMO, {"iters": 30, "lr": 0.3})
    device = launch.init_process_group()
    try:
        seed_everything(0)
        run = Run(config=config, work_dir=tmp_path, device=device, seed=0)
        trainer = ClusterTrainer(config, run)
        teacher_state = {
            k: v.clone() for k, v in trainer.tokenizer.teacher.network.state_dict().items()
        }
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

    losses = [log["codebook_loss"] for log in logs]
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:3]) / 3, losses
    # The optimizer holds the codebook alone; the teacher did not move.
    assert trainer.opt.params == [trainer.tokenizer.quantizer.codebook]
    for key, value in trainer.tokenizer.teacher.network.state_dict().items():
        assert torch.equal(value, teacher_state[key]), key

    photos = build_dataset(PhotosConfig(image_size=32), "train")
    batch = collate([photos[i] for i in range(len(photos))])
    tokenizer = trainer.tokenizer.eval()
    with torch.no_grad():
        ids = tokenizer.encode(batch["image"])  # (45, 4, 4), 720 tokens
    histogram = CodebookHistogram(tokenizer.num_codes)
    histogram.update(ids)
    assert histogram.usage() > 0.75 and histogram.perplexity() > 0.5 * tokenizer.num_codes


def _codebook(work: Path, name: str, strategy: str) -> torch.Tensor:
    checkpoint = work / name / "checkpoints" / "iter_6"
    if strategy == "fsdp":
        assert consolidate_main([str(checkpoint), str(work / f"{name}.safetensors")]) == 0
        return load_file(str(work / f"{name}.safetensors"))["quantizer.codebook"]
    return load_file(str(checkpoint / "models" / "model.safetensors"))["quantizer.codebook"]


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp_keeps_the_cvq_revivals_that_ddp_keeps(tmp_path: Path) -> None:
    """The codebook is revived in place inside the forward; FSDP must not drop that (it
    keeps the codebook whole on every rank), so 2-rank FSDP equals 2-rank DDP, and both
    differ from a run without revivals."""
    codebooks = {}
    for name, override in (("ddp", "ddp"), ("fsdp", "fsdp"), ("plain", "ddp")):
        argv = [name, str(DEMO), "--work-dirs", str(tmp_path), "--config-options",
                "iters:6", "batch_size:8", "num_codes:32", "--override",
                f".strategy.kind:'{override}'", ".loop.checkpoint_interval:6"]  # fmt: skip
        if name == "plain":
            argv.append(".model.quantizer.cvq:None")
        assert run_distributed(train_main, 2, argv) == [0, 0]
        codebooks[name] = _codebook(tmp_path, name, override)
    torch.testing.assert_close(codebooks["fsdp"], codebooks["ddp"], atol=1e-5, rtol=1e-4)
    assert (codebooks["ddp"] - codebooks["plain"]).abs().max() > 0.1
