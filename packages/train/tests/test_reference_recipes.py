"""The reference's remaining recipes as configs: the other datasets of VQGAN and VQ-KD, the
LlamaGen VQGAN variants and GPTs, the ViT pixel decoders, the no-attention ablation and the
FSDP files.

Each config is its family recipe with one thing changed, so each test compares a config
with the family config it varies: what must differ does, everything else is equal (the
values come from the recipe, not from copies). The slow tests are dry runs: the real config
file through the ``train`` command for two iterations, with the data, widths and LPIPS
shrunk by ``--override`` so that they run on a CPU in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from vq.core.configfile import dump_config, load_config
from vq.core.errors import UserError
from vq.tokenizers.autoencoders.vqgan import AttentionBlock, MidBlock
from vq.tokenizers.discriminators import PatchGANConfig, StyleGAN2DiscriminatorConfig
from vq.train.cli import train_main
from vq.train.trainers.ar import ARRunConfig
from vq.train.trainers.decoder import DecoderRunConfig
from vq.train.trainers.vqgan import VQGANRunConfig
from vq.train.trainers.vqkd import VQKDRunConfig

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs"
LLAMAGEN = CONFIGS / "llamagen" / "vqgan_imagenet_ddp.py"
VQKD_CLIP = CONFIGS / "vqkd" / "clip_8192_imagenet_ddp.py"
NO_REFINE = CONFIGS / "exps" / "llamagen_vqgan_imagenet_ddp-no_refine_layer.py"
DATASETS = {  # config name part -> (dataset kind, its default folder)
    "laion_aesthetics": ("laion_aesthetics", "data/laion/aesthetics"),
    "sa_med2d_20m": ("sa_med2d", "data/sa_med2d"),
    "satin": ("satin", "data/satin"),
}
DECODER_OPTIONS = {"it_config": str(VQKD_CLIP)}
C2I_OPTIONS = {"ir_config": str(LLAMAGEN), "ir_state_dict": "work_dirs/tok/checkpoints/latest"}
# every config this file covers, with the options it needs to build
NEW_CONFIGS = {
    **{f"vqgan/8192_{name}_ddp": {} for name in DATASETS},
    **{f"vqkd/clip_8192_{name}_ddp": {} for name in DATASETS},
    "vqkd/openclip_bigG_14_8192_imagenet_fsdp": {},
    "llamagen/vqgan_imagenet_384_ddp": {},
    "llamagen/vqgan_128_imagenet_384_ddp": {},
    "llamagen/vqgan_256_f8_imagenet_ddp": {},
    "llamagen/vqgan_128x16_f8_imagenet_ddp": {},
    "llamagen/vqgan_stylegan2_imagenet_ddp": {},
    "llamagen/c2i_medium_imagenet_ddp": C2I_OPTIONS,
    "llamagen/c2i_medium_vqgan_imagenet_ddp": {"ir_state_dict": "work_dirs/tok/latest"},
    "decoder/vqkd": DECODER_OPTIONS,
    "decoder/vqkd_large": DECODER_OPTIONS,
    "decoder/vqkd_large_fsdp": DECODER_OPTIONS,
    "exps/llamagen_vqgan_imagenet_ddp-no_refine_layer": {},
}


def config_of(name: str, **options):
    return load_config(CONFIGS / f"{name}.py", {**NEW_CONFIGS.get(name, {}), **options})


def without(config, *fields: str) -> dict:
    """``config`` as a dict, minus ``fields`` (dotted paths)."""
    dumped = config.model_dump()
    for path in fields:
        *parents, last = path.split(".")
        node = dumped
        for key in parents:
            node = node[key]
        del node[last]
    return dumped


# ------------------------------------------------------------------ every config builds


@pytest.mark.parametrize("name", NEW_CONFIGS)
def test_config_builds_and_its_resolved_dump_loads_again(name: str, tmp_path: Path) -> None:
    config = config_of(name)
    resolved = tmp_path / "resolved.py"
    resolved.write_text(dump_config(config, f"resolved {name}"))
    assert load_config(resolved) == config


def test_every_new_config_is_listed_in_its_family_readme() -> None:
    for name in NEW_CONFIGS:
        family, stem = name.split("/")
        readme = (CONFIGS / family / "README.md").read_text()
        assert f"`{stem}.py`" in readme, f"configs/{family}/README.md does not list {stem}.py"


# ------------------------------------------------------------------ other datasets


@pytest.mark.parametrize("dataset", DATASETS)
def test_vqgan_on_another_dataset_is_the_imagenet_recipe_with_its_data(dataset: str) -> None:
    config = config_of(f"vqgan/8192_{dataset}_ddp")
    imagenet = load_config(CONFIGS / "vqgan" / "8192_imagenet_ddp.py")  # PatchGAN 3, gain 0.8
    assert isinstance(config, VQGANRunConfig)
    assert (config.data.kind, config.data.root) == DATASETS[dataset]
    assert (config.data.image_size, config.data.augmentation) == (256, "strong")
    assert without(config, "data") == without(imagenet, "data")
    assert config_of(f"vqgan/8192_{dataset}_ddp", data_root="/d").data.root == "/d"


@pytest.mark.parametrize("dataset", DATASETS)
def test_vqkd_on_another_dataset_is_the_imagenet_recipe_with_its_data(dataset: str) -> None:
    config = config_of(f"vqkd/clip_8192_{dataset}_ddp")
    assert isinstance(config, VQKDRunConfig)
    assert (config.data.kind, config.data.root) == DATASETS[dataset]
    assert (config.data.image_size, config.data.augmentation) == (224, "default")
    assert without(config, "data") == without(load_config(VQKD_CLIP), "data")


def test_the_bigg_fsdp_file_is_the_ddp_config_with_fsdp() -> None:
    fsdp = config_of("vqkd/openclip_bigG_14_8192_imagenet_fsdp")
    ddp = load_config(CONFIGS / "vqkd" / "openclip_bigG_14_8192_imagenet_ddp.py")
    assert fsdp.strategy.kind == "fsdp" and fsdp.teacher.name == "openclip_bigG_14"
    assert fsdp == ddp.model_copy(update={"strategy": fsdp.strategy})


# ------------------------------------------------------------------ LlamaGen variants

VARIANTS = {  # config -> the fields where it differs from LlamaGen's VQGAN
    "vqgan_imagenet_384_ddp": ("data.image_size",),
    "vqgan_128_imagenet_384_ddp": ("data.image_size", "model.quantizer.num_codes"),
    "vqgan_256_f8_imagenet_ddp": ("model.quantizer.num_codes", "model.encoder.width_mults",
                                  "model.decoder.width_mults"),
    "vqgan_128x16_f8_imagenet_ddp": ("model.quantizer.num_codes", "model.quantizer.dim",
                                     "model.encoder.width_mults", "model.decoder.width_mults",
                                     "model.post_encode.channels", "model.pre_decode.channels"),
    "vqgan_stylegan2_imagenet_ddp": ("gan.discriminator",),
}  # fmt: skip


@pytest.mark.parametrize("name", VARIANTS)
def test_llamagen_variant_differs_from_llamagen_vqgan_where_its_name_says(name: str) -> None:
    config = config_of(f"llamagen/{name}")
    assert isinstance(config, VQGANRunConfig)
    assert without(config, *VARIANTS[name]) == without(load_config(LLAMAGEN), *VARIANTS[name])
    with torch.device("meta"):
        tokenizer = config.build_tokenizer()
    codes = tuple(tokenizer.quantizer.codebook.shape)
    expected = {
        "vqgan_imagenet_384_ddp": ((16384, 8), 384, (24, 24)),
        "vqgan_128_imagenet_384_ddp": ((128, 8), 384, (24, 24)),
        "vqgan_256_f8_imagenet_ddp": ((256, 8), 256, (32, 32)),
        "vqgan_128x16_f8_imagenet_ddp": ((128, 16), 256, (32, 32)),
        "vqgan_stylegan2_imagenet_ddp": ((16384, 8), 256, (16, 16)),
    }[name]
    assert (codes, config.image_size, tokenizer.grid_size(config.image_size)) == expected
    discriminator = config.gan.discriminator
    if name == "vqgan_stylegan2_imagenet_ddp":
        assert isinstance(discriminator, StyleGAN2DiscriminatorConfig)
        assert discriminator.image_size == 256
        assert config_of(f"llamagen/{name}", image_size=512).gan.discriminator.image_size == 512
    else:
        assert isinstance(discriminator, PatchGANConfig) and discriminator.depth == 3


def test_no_refine_layer_ablation_has_no_attention_nor_mid_block() -> None:
    ablation, full = load_config(NO_REFINE), load_config(LLAMAGEN)
    assert isinstance(ablation, VQGANRunConfig)
    switches = [f"model.{part}.{flag}" for part in ("encoder", "decoder")
                for flag in ("attention", "mid_block")]  # fmt: skip
    assert without(ablation, *switches) == without(full, *switches)
    with torch.device("meta"):
        plain, reference = ablation.build_tokenizer(), full.build_tokenizer()
    for part in ("encoder", "decoder"):
        kinds = {type(m) for m in getattr(plain, part).modules()}
        assert AttentionBlock not in kinds and MidBlock not in kinds, part
        assert {AttentionBlock, MidBlock} <= {type(m) for m in getattr(reference, part).modules()}
    assert plain.grid_size(256) == reference.grid_size(256) == (16, 16)


# ------------------------------------------------------------------ LlamaGen GPTs


@pytest.mark.parametrize("name", ["c2i_medium_imagenet_ddp", "c2i_medium_vqgan_imagenet_ddp"])
def test_llamagen_c2i_is_the_ar_recipe_with_llamagen_training(name: str) -> None:
    config = config_of(f"llamagen/{name}")
    ar = load_config(CONFIGS / "ar" / "c2i_llama_medium_cfg_imagenet_ddp.py", C2I_OPTIONS)
    assert isinstance(config, ARRunConfig) and config.tokenizer is not None
    assert config.network == ar.network  # LLaMA medium, null class, label dropout 0.1
    assert (config.network.architecture, config.network.preset) == ("llama", "medium")
    assert config.network.null_class and config.network.label_dropout == 0.1
    opt = config.optimization.optimizer
    assert (opt.kind, opt.lr, opt.betas, opt.weight_decay, opt.eps) == (
        "adamw", 1e-4, (0.9, 0.95), 0.05, 1e-6,
    )  # fmt: skip
    assert config.optimization.schedule == ar.optimization.schedule  # cosine to 0
    assert (config.loop.iters, config.loader.batch_size, config.loader.workers) == (
        250_000, 256, 10,
    )  # fmt: skip
    assert config.loader.batch_size_is_global
    sampling = config.sampling
    assert (sampling.guidance_scale, sampling.temperature, sampling.top_k, sampling.top_p) == (
        1.75, 1.0, None, None,
    )  # fmt: skip
    assert (config.data.kind, config.data.image_size, config.data.augmentation) == (
        "imagenet", 256, "weak",
    )  # fmt: skip
    if name == "c2i_medium_vqgan_imagenet_ddp":  # LlamaGen's VQGAN is the default tokenizer
        assert config.tokenizer.config == Path("configs/llamagen/vqgan_imagenet_ddp.py")
    fsdp = config_of(f"llamagen/{name}", strategy="fsdp", iters=10, batch_size=8)
    assert fsdp.strategy.kind == "fsdp" and (fsdp.loop.iters, fsdp.loader.batch_size) == (10, 8)


def test_llamagen_c2i_without_its_tokenizer_is_one_user_error() -> None:
    with pytest.raises(UserError, match="the AR configs need the frozen tokenizer"):
        load_config(CONFIGS / "llamagen" / "c2i_medium_imagenet_ddp.py")
    with pytest.raises(UserError, match="the AR configs need the frozen tokenizer"):
        load_config(CONFIGS / "llamagen" / "c2i_medium_vqgan_imagenet_ddp.py")


# ------------------------------------------------------------------ ViT pixel decoders


@pytest.mark.parametrize(
    ("name", "decoder", "sizes"),
    [("vqkd", "vqkd", (768, 12, 12)), ("vqkd_large", "vqkd_large", (1280, 32, 16)),
     ("vqkd_large_fsdp", "vqkd_large", (1280, 32, 16))],
)  # fmt: skip
def test_vit_decoder_config_is_the_llamagen_decoder_with_a_vit(name, decoder, sizes) -> None:
    config = config_of(f"decoder/{name}")
    paper = load_config(
        CONFIGS / "decoder" / "llamagen.py", {**DECODER_OPTIONS, "decoder": decoder}
    )
    assert isinstance(config, DecoderRunConfig)
    vit = config.model.decoder
    assert (vit.embed_dim, vit.depth, vit.num_heads) == sizes
    assert (vit.patch_size, vit.out_patch_size, vit.out_dim, vit.grid_size) == (1, 16, 3, 16)
    assert config.strategy.kind == ("fsdp" if name.endswith("_fsdp") else "ddp")
    assert config == paper.model_copy(update={"strategy": config.strategy})


# ------------------------------------------------------------------ dry runs


def write_images(folder: Path, count: int, size: int = 40) -> list[str]:
    """``count`` random RGB PNGs named 000.png ... in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    names = [f"{i:03d}.png" for i in range(count)]
    for name in names:
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
    return names


def dry_run(work: Path, config: Path, options: list[str], overrides: list[str]) -> Path:
    """Two iterations of ``config`` through the train command; the run's work dir."""
    argv = ["dry", str(config), "--work-dirs", str(work), "--config-options", "iters:2",
            "batch_size:4", "workers:0", "image_size:32", *options, "--override",
            ".loop.checkpoint_interval:2", ".loop.log_interval:1", *overrides]  # fmt: skip
    assert train_main(argv) == 0
    run = work / "dry"
    assert (run / "checkpoints" / "iter_2").is_dir()
    return run


NARROW_VQGAN = [".model.encoder.width:32", ".model.decoder.width:32",
                ".reconstruction.lpips_weight:0.0"]  # fmt: skip


@pytest.mark.slow
def test_vqgan_trains_on_a_satin_folder(tmp_path: Path, one_thread) -> None:
    for subset in ("AID", "RSSCN7"):
        write_images(tmp_path / "satin" / subset, 10)
    dry_run(
        tmp_path / "work",
        CONFIGS / "vqgan" / "8192_satin_ddp.py",
        [f"data_root::{tmp_path / 'satin'}", "num_codes:64"],
        [*NARROW_VQGAN, ".data.subsets:['AID','RSSCN7']"],
    )


@pytest.mark.slow
def test_vqkd_trains_on_a_sa_med2d_folder(tmp_path: Path, one_thread) -> None:
    root = tmp_path / "sa_med2d"
    names = write_images(root / "images", 12)
    (root / "annotations").mkdir()
    annotations = {f"images/{name}": [] for name in names}
    (root / "annotations" / "SAMed2D_v1.json").write_text(json.dumps(annotations))
    dry_run(
        tmp_path / "work",
        CONFIGS / "vqkd" / "clip_8192_sa_med2d_20m_ddp.py",
        [f"data_root::{root}", "num_codes:16"],
        [".data.num_val:2", ".model.encoder.num_heads:2", ".model.encoder.embed_dim:32",
         ".model.encoder.depth:1", ".model.decoder.num_heads:2", ".model.decoder.embed_dim:32",
         ".teacher:dict(name='efficientnet_lite0',image_size=64)",
         ".model.decoder.out_dim:112"],
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [CONFIGS / "llamagen" / "vqgan_stylegan2_imagenet_ddp.py", NO_REFINE],
    ids=["stylegan2", "no_refine_layer"],
)
def test_llamagen_variant_trains_both_players(config: Path, tmp_path: Path, one_thread) -> None:
    """The GAN from the first iteration, so that the discriminator (StyleGAN2 at 32 px with
    narrow channels) trains too; the ImageNet data replaced by the embedded photos."""
    overrides = [*NARROW_VQGAN, ".gan.discriminator_start:0",
                 ".data:dict(kind='photos',image_size=32)"]  # fmt: skip
    if "stylegan2" in config.name:
        overrides.append(".gan.discriminator.channels:{4:32,8:32,16:32,32:32}")
    run = dry_run(tmp_path / "work", config, ["num_codes:64"], overrides)
    log = next((run / "logs").glob("*.log")).read_text()
    assert "d_loss" in log


@pytest.mark.slow
def test_llamagen_c2i_trains_on_a_tiny_tokenizer(tmp_path: Path, one_thread) -> None:
    """``c2i_medium_imagenet_ddp`` with the tiny demo VQGAN as its frozen tokenizer and a
    tiny LLaMA, on the embedded photos."""
    tokenizer_config = CONFIGS / "demo" / "vqgan_photos.py"
    torch.manual_seed(0)
    tokenizer = load_config(tokenizer_config).build_tokenizer()
    weights = tmp_path / "tokenizer.safetensors"
    save_file(tokenizer.state_dict(), str(weights))
    dry_run(
        tmp_path / "work",
        CONFIGS / "llamagen" / "c2i_medium_imagenet_ddp.py",
        [f"ir_config::{tokenizer_config}", f"ir_state_dict::{weights}"],
        [".network.preset::tiny", ".num_classes:10", ".data:dict(kind='photos',image_size=32)"],
    )


@pytest.mark.slow
def test_vit_pixel_decoder_trains_on_frozen_vqkd_tokens(tmp_path: Path, one_thread) -> None:
    """``decoder/vqkd.py`` on a random ViT-B/16 VQ-KD (2x2 tokens of 32 px photos), its
    ViT-B pixel decoder cut to one narrow block."""
    torch.manual_seed(0)
    weights = tmp_path / "vqkd.safetensors"
    save_file(load_config(VQKD_CLIP).build_tokenizer().state_dict(), str(weights))
    dry_run(
        tmp_path / "work",
        CONFIGS / "decoder" / "vqkd.py",
        [f"it_config::{VQKD_CLIP}", f"it_state_dict::{weights}"],
        [".reconstruction.lpips_weight:0.0", ".data:dict(kind='photos',image_size=32)",
         ".model.decoder.num_heads:2", ".model.decoder.embed_dim:32", ".model.decoder.depth:1"],
    )  # fmt: skip
