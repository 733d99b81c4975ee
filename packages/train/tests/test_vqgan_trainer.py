"""The GAN trainer of pixel tokenizers (VQGAN / CVQ-VAE / FSQ / LlamaGen-VQGAN) and its configs."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from vq.core.configfile import dump_config, load_config
from vq.core.errors import UserError
from vq.core.loop import Run, train
from vq.core.optim import OptimizationConfig, OptimizerConfig
from vq.core.parallel import unwrap
from vq.core.registry import TRAINERS
from vq.core.testing import run_distributed
from vq.tokenizers.discriminators import PatchGANConfig, build_discriminator
from vq.tokenizers.losses import r1_penalty
from vq.tokenizers.models.pixel_tokenizer import PixelTokenizer
from vq.tokenizers.quantizers import FSQConfig
from vq.train.cli import train_main
from vq.train.data import build_dataset, collate
from vq.train.trainers.vqgan import VQGANRunConfig, VQGANTrainer

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs"
DEMO = CONFIGS / "demo" / "vqgan_photos.py"
CVQ_DEMO = CONFIGS / "demo" / "cvqvae_photos.py"
FAMILY_CONFIGS = sorted(
    p
    for family in ("vqgan", "cvqvae", "fsq", "llamagen")
    for p in (CONFIGS / family).glob("*.py")
    # c2i_*: LlamaGen's proposal networks (AR runs, tested in test_llamagen_released.py)
    if not p.name.startswith(("_", "c2i_"))
)
DEMO_CONFIGS = [CONFIGS / "demo" / f"{name}_photos.py" for name in ("vqgan", "cvqvae", "fsq")]


def _with_lpips(config: VQGANRunConfig, files: dict[str, Path], weight: float = 1.0):
    rec = config.reconstruction.model_copy(
        update={
            "lpips_weight": weight,
            "lpips": config.reconstruction.lpips.model_copy(update=files),
        }
    )
    return config.model_copy(update={"reconstruction": rec})


# ------------------------------------------------------------------ configs ---------


@pytest.mark.parametrize(
    "path", FAMILY_CONFIGS + DEMO_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_every_config_builds_validates_and_reloads(path: Path, tmp_path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, VQGANRunConfig)
    assert TRAINERS.get(config.trainer) is VQGANTrainer
    assert VQGANRunConfig.model_validate(config.model_dump()) == config
    dumped = tmp_path / "resolved.py"
    dumped.write_text(dump_config(config))
    assert load_config(dumped) == config


def test_there_is_a_config_for_every_reference_recipe() -> None:
    names = {f"{p.parent.name}/{p.stem}" for p in FAMILY_CONFIGS}
    expected = {
        "vqgan/1024_imagenet_ddp",
        "vqgan/8192_imagenet_ddp",
        "vqgan/8192_dd2_aglwg075_imagenet_ddp",
        "vqgan/8192_dd2_aglwg075_imagenet_fsdp",
        "vqgan/16384_imagenet_ddp",
        "vqgan/16384_dd2_aglwg075_imagenet_ddp",
        "vqgan/8192_stylegan2_imagenet_ddp",
        "cvqvae/8192_dd2_aglwg075_imagenet_ddp",
        "fsq/8000_imagenet_ddp",
        "fsq/8000_imagenet_fsdp",
        "fsq/64000_imagenet_ddp",
        "llamagen/vqgan_imagenet_ddp",
    }
    assert expected <= names


def _load(name: str, **options):
    return load_config(CONFIGS / f"{name}.py", options)


@pytest.mark.parametrize(
    ("name", "codes", "depth", "gain"),
    [
        ("vqgan/1024_imagenet_ddp", 1024, 3, 0.8),
        ("vqgan/8192_imagenet_ddp", 8192, 3, 0.8),
        ("vqgan/8192_dd2_aglwg075_imagenet_ddp", 8192, 2, 0.75),
        ("vqgan/16384_imagenet_ddp", 16384, 3, 0.8),
        ("vqgan/16384_dd2_aglwg075_imagenet_ddp", 16384, 2, 0.75),
    ],
)
def test_vqgan_configs_resolve_to_the_reference_recipe(name, codes, depth, gain) -> None:
    c = _load(name)
    q = c.model.quantizer
    assert (q.kind, q.num_codes, q.dim, q.distance, q.cvq, q.normalize) == (
        "vector",
        codes,
        256,
        "l2",
        None,
        False,
    )
    assert (q.commitment_weight, q.resolved_codebook_weight) == (0.25, 1.0)
    assert c.gan.discriminator == PatchGANConfig(depth=depth)
    assert (c.gan.adaptive_weight_gain, c.gan.discriminator_start, c.gan.loss) == (gain, 0, "hinge")
    rec = c.reconstruction
    assert (rec.l1_weight, rec.l2_weight, rec.lpips_weight) == (1.0, 0.0, 1.0)
    assert rec.lpips.vgg_path == Path("pretrained/lpips/vgg16.pth")
    g, d = c.optimization.optimizer, c.discriminator_optimization.optimizer
    assert (g.kind, g.lr, g.betas, g.weight_decay) == ("adam", 5.4e-5, (0.5, 0.9), 0.0)
    assert (d.kind, d.lr, d.betas) == ("adam", 4.32e-4, (0.5, 0.9))
    assert c.optimization.schedule.kind == "constant"
    assert (c.loop.iters, c.loop.log_interval, c.loop.visual_interval) == (260_000, 50, 500)
    assert c.loop.checkpoint_interval == 10_000
    assert (c.loader.batch_size, c.loader.batch_size_is_global, c.loader.workers) == (96, True, 5)
    assert (c.data.kind, c.data.image_size, c.data.augmentation) == ("imagenet", 256, "strong")
    assert c.model.encoder.downsample_factor == 16
    assert (c.strategy.kind, c.strategy.find_unused_parameters) == ("ddp", False)


def test_variant_configs() -> None:
    stylegan = _load("vqgan/8192_stylegan2_imagenet_ddp").gan
    assert (stylegan.discriminator.kind, stylegan.discriminator.image_size) == ("stylegan2", 256)
    assert stylegan.adaptive_weight_gain == 0.8

    cvq = _load("cvqvae/8192_dd2_aglwg075_imagenet_ddp")
    q = cvq.model.quantizer
    assert (q.num_codes, q.dim, q.distance, q.cvq.decay, q.cvq.sync) == (
        8192,
        256,
        "cosine",
        0.99,
        False,
    )
    assert (cvq.gan.discriminator.depth, cvq.gan.adaptive_weight_gain) == (2, 0.75)

    for codes, levels in ((8000, [8, 8, 5, 5, 5]), (64000, [8, 8, 8, 5, 5, 5])):
        fsq = _load(f"fsq/{codes}_imagenet_ddp")
        assert fsq.model.quantizer == FSQConfig(levels=levels)
        assert fsq.model.post_encode.channels == (256, 256, len(levels))
        assert fsq.model.pre_decode.channels == (len(levels), 256, 256)
        assert (fsq.gan.discriminator.depth, fsq.gan.adaptive_weight_gain) == (3, 0.8)
        assert fsq.build_tokenizer().num_codes == codes

    llama = _load("llamagen/vqgan_imagenet_ddp")
    q = llama.model.quantizer
    assert (q.num_codes, q.dim, q.normalize, q.commitment_weight) == (16384, 8, True, 0.25)
    rec = llama.reconstruction
    assert (rec.l1_weight, rec.l2_weight, rec.lpips_weight) == (0.0, 1.0, 1.0)
    gan = llama.gan
    assert (gan.generator_weight, gan.discriminator_weight, gan.adaptive_weight_gain) == (
        0.5,
        0.5,
        None,
    )
    assert (gan.discriminator_start, gan.discriminator.depth) == (20_000, 3)
    for opt in (llama.optimization.optimizer, llama.discriminator_optimization.optimizer):
        assert (opt.lr, opt.betas) == (1e-4, (0.9, 0.95))
    assert (llama.loop.iters, llama.loader.batch_size, llama.loader.workers) == (400_000, 128, 10)

    assert _load("vqgan/8192_dd2_aglwg075_imagenet_fsdp").strategy.kind == "fsdp"
    assert _load("fsq/8000_imagenet_fsdp").strategy.kind == "fsdp"
    fsdp = _load("vqgan/8192_dd2_aglwg075_imagenet_fsdp").model_copy(update={"strategy": None})
    ddp = _load("vqgan/8192_dd2_aglwg075_imagenet_ddp").model_copy(update={"strategy": None})
    assert fsdp == ddp


def test_config_options_reach_the_config() -> None:
    c = _load(
        "vqgan/8192_dd2_aglwg075_imagenet_ddp",
        iters=1000,
        batch_size=32,
        data_root="/datasets/imagenet",
        workers=2,
        image_size=128,
    )
    assert (c.loop.iters, c.loader.batch_size, c.loader.workers) == (1000, 32, 2)
    assert (c.data.root, c.data.image_size) == ("/datasets/imagenet", 128)
    with pytest.raises(UserError, match="does not take option"):
        _load("vqgan/8192_dd2_aglwg075_imagenet_ddp", itters=5)
    with pytest.raises(UserError, match="multiple"):
        _load("vqgan/8192_dd2_aglwg075_imagenet_ddp", image_size=100)


def test_full_size_parameter_counts_match_the_reference() -> None:
    config = _load("vqgan/8192_dd2_aglwg075_imagenet_ddp")
    with torch.device("meta"):
        tokenizer = PixelTokenizer(config.model)
        discriminator = build_discriminator(config.gan.discriminator)

    def millions(module: torch.nn.Module) -> float:
        return sum(p.numel() for p in module.parameters()) / 1e6

    assert millions(tokenizer.encoder) == pytest.approx(29.30, rel=0.01)
    assert millions(tokenizer.decoder) == pytest.approx(42.45, rel=0.01)
    assert tuple(tokenizer.quantizer.codebook.shape) == (8192, 256)
    assert millions(discriminator) == pytest.approx(0.66, rel=0.01)
    assert tokenizer.grid_size(256) == (16, 16)


def test_missing_lpips_weights_fail_when_the_trainer_is_built(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no pretrained/ here
    config = _tiny(lpips=1.0)  # the default weight paths, relative to the working directory
    run = Run(config=config, work_dir=tmp_path / "w", device=torch.device("cpu"), seed=0)
    with pytest.raises(UserError, match=re.escape(str(Path("pretrained/lpips/vgg16.pth")))):
        VQGANTrainer(config, run)


# ------------------------------------------------------------------ one step --------


def _tiny(path: Path = DEMO, **options) -> VQGANRunConfig:
    return load_config(path, {"image_size": 16, "batch_size": 4, "num_codes": 64, **options})


def _sgd(config: VQGANRunConfig) -> VQGANRunConfig:
    """Plain SGD with lr 1: a parameter moves by exactly minus its gradient."""
    sgd = OptimizationConfig(optimizer=OptimizerConfig(kind="sgd", lr=1.0, momentum=0.0))
    return config.model_copy(update={"optimization": sgd, "discriminator_optimization": sgd})


def _expected_step(trainer: VQGANTrainer, image: torch.Tensor, gan_on: bool):
    """The gradients of both players, written out plainly on copies of the models."""
    cfg = trainer.config
    gan = cfg.gan
    model = copy.deepcopy(unwrap(trainer.model))
    disc = copy.deepcopy(unwrap(trainer.gan.discriminator))
    lpips = trainer.gan.reconstruction_loss.lpips

    out = model(image)
    rec = out.reconstruction
    r_loss = cfg.reconstruction.l1_weight * (rec - image).abs().mean()
    if lpips is not None:
        r_loss = r_loss + cfg.reconstruction.lpips_weight * lpips(rec, image).mean()
    total = r_loss + sum(out.quantizer.losses.values())
    if gan_on:
        logits = disc.requires_grad_(False)(rec)  # train mode: updates BatchNorm statistics
        disc.requires_grad_(True)
        g_loss = -logits.mean() if gan.loss == "hinge" else F.softplus(-logits).mean()
        if gan.adaptive_weight_gain is None:
            weight = gan.generator_weight
        else:
            last = model.decoder.out_conv.weight
            (gr,) = torch.autograd.grad(r_loss, last, retain_graph=True)
            (gg,) = torch.autograd.grad(g_loss, last, retain_graph=True)
            ratio = (gr.norm() / (gg.norm() + 1e-4)).clamp(0, 1e4)
            weight = gan.generator_weight * gan.adaptive_weight_gain * ratio
        total = total + weight * g_loss
    g_grads = torch.autograd.grad(total, list(model.parameters()))

    d_grads = None
    if gan_on:
        real, fake = disc(image), disc(rec.detach())
        if gan.loss == "hinge":
            d_loss = 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())
        else:
            d_loss = 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())
        d_loss = gan.discriminator_weight * d_loss
        if gan.r1_weight:
            d_loss = d_loss + gan.r1_weight * r1_penalty(disc, image)
        d_grads = torch.autograd.grad(d_loss, list(disc.parameters()))
    return g_grads, d_grads


@pytest.mark.parametrize(
    "gan",
    [
        {"discriminator_start": 5},  # before the discriminator starts
        {},  # VQGAN: hinge, adaptive weight
        {"adaptive_weight_gain": None, "generator_weight": 0.5, "discriminator_weight": 0.5},
        {"loss": "non_saturating", "r1_weight": 2.0},
    ],
    ids=["d_off", "vqgan", "llamagen_weights", "non_saturating_r1"],
)
def test_one_step_equals_the_plain_two_player_gradients(gan, lpips_files, tmp_path) -> None:
    torch.manual_seed(0)
    config = _with_lpips(_sgd(_tiny(discriminator_start=0)), lpips_files)
    config = config.model_copy(update={"gan": config.gan.model_copy(update=gan)})
    run = Run(config=config, work_dir=tmp_path, device=torch.device("cpu"), seed=0)
    trainer = VQGANTrainer(config, run)
    batch = collate([trainer.dataset[i] for i in range(4)])
    gan_on = config.gan.discriminator_start < 1

    with torch.no_grad():
        g_before = [p.clone() for p in trainer.model.parameters()]
        d_before = [p.clone() for p in trainer.gan.discriminator.parameters()]
    g_grads, d_grads = _expected_step(trainer, batch["image"], gan_on)
    forwards = []
    unwrap(trainer.model).encoder.register_forward_hook(lambda *a: forwards.append(1))
    logs = trainer.step(batch, iteration=1)

    assert len(forwards) == 1  # one autoencoder forward per iteration
    for before, grad, after in zip(g_before, g_grads, trainer.model.parameters()):
        torch.testing.assert_close(after, before - grad, rtol=1e-4, atol=1e-6)
    for i, (before, after) in enumerate(zip(d_before, trainer.gan.discriminator.parameters())):
        expected = before if d_grads is None else before - d_grads[i]
        torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-6)
    assert all(math.isfinite(float(v)) for v in logs.values())
    assert {
        "l1_r_loss",
        "lpips_r_loss",
        "q_loss",
        "codebook_loss",
        "commitment_loss",
    } <= logs.keys()
    assert {"codebook_usage", "codebook_entropy", "codebook_perplexity"} <= logs.keys()
    assert {"g_loss", "aglw", "d_loss", "d_real", "d_fake"} <= logs.keys()
    assert (float(logs["aglw"]) > 0) == gan_on
    assert ("d_lr" in logs) == gan_on


def test_adaptive_weight_backpropagates_lpips_once_and_accumulates(lpips_files, tmp_path):
    """With the adaptive weight, LPIPS runs one backward per micro-batch (not one for the
    weight and one for the step), and two accumulated micro-batches of one batch step by
    exactly its plain gradient (each backward divided by the accumulation steps)."""
    torch.manual_seed(0)
    config = _with_lpips(_sgd(_tiny(discriminator_start=0)), lpips_files)
    config = config.model_copy(update={"loop": config.loop.model_copy(update={"accumulation": 2})})
    run = Run(config=config, work_dir=tmp_path, device=torch.device("cpu"), seed=0)
    trainer = VQGANTrainer(config, run)
    batch = collate([trainer.dataset[i] for i in range(4)])
    with torch.no_grad():
        g_before = [p.clone() for p in trainer.model.parameters()]
    g_grads, _ = _expected_step(trainer, batch["image"], gan_on=True)
    backwards = []
    lpips = trainer.gan.reconstruction_loss.lpips
    lpips.register_full_backward_hook(lambda *args: backwards.append("lpips"))

    trainer.step(batch, iteration=1)
    assert backwards == ["lpips"]
    trainer.step(batch, iteration=1)  # the second micro-batch steps
    assert backwards == ["lpips", "lpips"]
    for before, grad, after in zip(g_before, g_grads, trainer.model.parameters()):
        torch.testing.assert_close(after, before - grad, rtol=1e-4, atol=1e-6)


def test_visuals_are_images_and_reconstructions(tmp_path) -> None:
    config = _tiny(CVQ_DEMO)  # its codebook would move in a training-mode forward
    trainer = VQGANTrainer(
        config, Run(config=config, work_dir=tmp_path, device=torch.device("cpu"), seed=0)
    )
    batch = collate([trainer.dataset[i] for i in range(4)])
    codebook = unwrap(trainer.model).quantizer.codebook.clone()
    rows = trainer.visuals(batch)
    assert list(rows) == ["image", "reconstruction"]
    assert rows["reconstruction"].shape == batch["image"].shape == (4, 3, 16, 16)
    assert trainer.model.training
    assert torch.equal(unwrap(trainer.model).quantizer.codebook, codebook)


# ------------------------------------------------------------------ training --------


def _psnr(tokenizer: PixelTokenizer, image: torch.Tensor) -> float:
    """Mean per-image PSNR (data range 1) of the reconstructions of ``image`` in [-1, 1]."""
    with torch.no_grad():
        rec = tokenizer.decode(tokenizer.encode(image)).clamp(-1, 1)
    mse = ((rec - image) / 2).pow(2).flatten(1).mean(1)
    return float((-10 * torch.log10(mse)).mean())


def _tokenizer(config: VQGANRunConfig, weights: Path | None) -> PixelTokenizer:
    torch.manual_seed(0)
    tokenizer = config.build_tokenizer().eval()
    if weights is not None:
        tokenizer.load_state_dict(load_file(str(weights)))
    return tokenizer


@pytest.mark.slow
def test_tiny_vqgan_learns_to_reconstruct_photos(tmp_path) -> None:
    options = {"image_size": 16, "batch_size": 8, "iters": 200, "discriminator_start": 150}
    argv = ["tiny", str(DEMO), "--work-dirs", str(tmp_path), "--config-options"]
    assert train_main(argv + [f"{k}:{v}" for k, v in options.items()]) == 0
    config = load_config(DEMO, options)
    val = collate(list(build_dataset(config.data, "val")))["image"]  # (9, 3, 16, 16)
    checkpoints = tmp_path / "tiny" / "checkpoints"
    start = _psnr(_tokenizer(config, None), val)
    before_gan = _psnr(_tokenizer(config, checkpoints / "iter_100/models/model.safetensors"), val)
    end = _psnr(_tokenizer(config, checkpoints / "iter_200/models/model.safetensors"), val)
    assert end > start + 2.0, (start, before_gan, end)
    assert end > before_gan - 1.0, (start, before_gan, end)  # the GAN term does not wreck it
    log = next((tmp_path / "tiny" / "logs").glob("*.log")).read_text()
    d_losses = [float(v) for v in re.findall(r" d_loss ([0-9.e+-]+)", log)]
    assert d_losses[0] == 0.0 and 0.0 < d_losses[-1] < 2.0, d_losses
    assert (tmp_path / "tiny" / "visuals" / "iter_200.png").is_file()


def _train_on_two_ranks(work_dir: str) -> dict[str, dict[str, torch.Tensor]]:
    from vq.core import distributed

    config = _tiny(CVQ_DEMO, batch_size=8, iters=4, discriminator_start=1)
    run = Run(config=config, work_dir=Path(work_dir), device=torch.device("cpu"), seed=0)
    torch.manual_seed(distributed.rank())  # different initialisation: DDP must sync it
    trainer = VQGANTrainer(config, run)
    train(run, trainer)
    return {
        "model": {k: v.detach().clone() for k, v in unwrap(trainer.model).named_parameters()},
        "usage": {"usage": unwrap(trainer.model).quantizer.reviver.usage.clone()},
        "discriminator": {
            k: v.detach().clone() for k, v in unwrap(trainer.gan.discriminator).named_parameters()
        },
    }


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_keeps_both_players_identical_across_ranks(tmp_path) -> None:
    rank0, rank1 = run_distributed(_train_on_two_ranks, 2, str(tmp_path))
    for part in ("model", "usage", "discriminator"):
        assert rank0[part].keys() == rank1[part].keys()
        for k in rank0[part]:
            assert torch.equal(rank0[part][k], rank1[part][k]), (part, k)
    assert rank0["usage"]["usage"].sum() > 0


@pytest.mark.slow
def test_resume_is_bit_identical(tmp_path, lpips_files) -> None:
    base = [str(DEMO), "--work-dirs", str(tmp_path), "--override",
            f".reconstruction.lpips.vgg_path::{lpips_files['vgg_path']}",
            f".reconstruction.lpips.lin_path::{lpips_files['lin_path']}",
            ".loop.checkpoint_interval:3",
            ".optimization.schedule.total_iters:6",  # one cosine for the 3- and 6-step runs
            "--config-options", "image_size:16", "batch_size:4",
            "num_codes:64", "discriminator_start:1", "lpips:1.0"]  # fmt: skip
    assert train_main(["straight", *base, "iters:6"]) == 0
    assert train_main(["resumed", *base, "iters:3"]) == 0
    assert train_main(["resumed", *base, "iters:6", "--auto-resume"]) == 0
    log = "".join(p.read_text() for p in (tmp_path / "resumed" / "logs").glob("*.log"))
    assert "resumed from" in log
    for name in ("model", "discriminator"):
        a, b = (
            load_file(
                str(tmp_path / run / "checkpoints" / "iter_6" / "models" / f"{name}.safetensors")
            )
            for run in ("straight", "resumed")
        )
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
