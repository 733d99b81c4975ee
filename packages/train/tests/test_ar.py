"""The AR trainer: frozen tokenizer source, token files, configs, and training end to end.

The tokenizer is a test-local run config (``TinyTokenizerRunConfig``, a tiny
``PixelTokenizer`` with 32 codes) whose random weights are saved as a run's checkpoint next
to its resolved config file, exactly what a finished tokenizer run leaves in its work dir.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vq.core.configfile import dump_config, load_config
from vq.core.errors import UserError
from vq.core.loop import LoopConfig
from vq.core.optim import OptimizationConfig
from vq.core.parallel import _shard_units
from vq.core.tensorfiles import read_weights
from vq.core.testing import run_distributed
from vq.generators import ProposalNetworkConfig, build_proposal_network
from vq.tokenizers.models.pixel_tokenizer import PixelTokenizer, PixelTokenizerConfig
from vq.tokenizers.quantizers import VectorQuantizerConfig
from vq.train.cli import consolidate_main, train_main
from vq.train.data import (
    ImageNetConfig,
    PhotosConfig,
    TokenFileConfig,
    TokenFileDataset,
    collate,
    read_token_file_header,
    write_token_file,
)
from vq.train.tokenizer_run import TokenizerRunConfig
from vq.train.tokenizer_source import load_frozen_tokenizer
from vq.train.trainers.ar import ARRunConfig, transformer_block_parameters

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "configs" / "demo" / "ar_photos.py"
AR_CONFIGS = sorted((REPO / "configs" / "ar").glob("c2i_*.py"))
NUM_CODES = 32


class TinyTokenizerRunConfig(TokenizerRunConfig):
    """Stands in for a tokenizer family's run config: all the AR stage needs of one."""

    trainer: str = "tiny-tokenizer"
    loop: LoopConfig = LoopConfig(iters=1)
    data: PhotosConfig = PhotosConfig(image_size=32)
    model: PixelTokenizerConfig = PixelTokenizerConfig.from_preset(
        "tiny", VectorQuantizerConfig(num_codes=NUM_CODES, dim=8)
    )

    def build_tokenizer(self) -> PixelTokenizer:
        return PixelTokenizer(self.model)


def make_tokenizer_run(root: Path) -> tuple[Path, Path]:
    """A finished tiny tokenizer run under ``root``: (resolved config file, checkpoint dir)."""
    config = TinyTokenizerRunConfig()
    root.mkdir(parents=True, exist_ok=True)
    config_file = root / "tiny_tokenizer.py"
    config_file.write_text(dump_config(config))
    torch.manual_seed(0)
    tokenizer = config.build_tokenizer()
    with torch.no_grad():  # codes spread like encoder features, so images use many codes
        tokenizer.quantizer.codebook.normal_()
    checkpoint = root / "checkpoints" / "iter_1"
    (checkpoint / "models").mkdir(parents=True)
    save_file(tokenizer.state_dict(), str(checkpoint / "models" / "model.safetensors"))
    return config_file, checkpoint


@pytest.fixture(scope="module")
def tokenizer_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_tokenizer_run(tmp_path_factory.mktemp("tokenizer"))


def _losses(work: Path, name: str) -> list[float]:
    logs = sorted((work / name / "logs").glob("*.log"))
    text = "".join(p.read_text() for p in logs)
    return [float(v) for v in re.findall(r" loss ([0-9.e+-]+)", text)]


# ------------------------------------------------------------------ tokenizer source ---


def test_frozen_tokenizer_has_the_run_weights_and_no_gradients(
    tokenizer_run: tuple[Path, Path],
) -> None:
    config_file, checkpoint = tokenizer_run
    tokenizer = load_frozen_tokenizer(config_file, [checkpoint])
    assert not tokenizer.training
    assert not any(p.requires_grad for p in tokenizer.parameters())
    saved = read_weights(checkpoint)
    for key, value in tokenizer.state_dict().items():
        assert torch.equal(value, saved[key]), key

    image = PhotosConfig(image_size=16).build("val")[0]["image"][None]  # (1, 3, 16, 16)
    ids = tokenizer.encode(image)
    assert ids.shape == (1, 4, 4) and int(ids.max()) < NUM_CODES
    assert tokenizer.decode(ids).shape == (1, 3, 16, 16)


def test_frozen_tokenizer_merges_files_in_order_and_refuses_gaps(
    tokenizer_run: tuple[Path, Path], tmp_path: Path
) -> None:
    config_file, checkpoint = tokenizer_run
    saved = read_weights(checkpoint)
    decoder_only = {k: v for k, v in saved.items() if k.startswith("decoder.")}
    save_file(decoder_only, str(tmp_path / "decoder.safetensors"))
    with pytest.raises(UserError, match="do not cover it"):
        load_frozen_tokenizer(config_file, [tmp_path / "decoder.safetensors"])

    # like a pixel decoder's checkpoint followed by its tokenizer's: the later file wins
    changed = {k: v + 1 for k, v in decoder_only.items()}
    save_file(changed, str(tmp_path / "changed.safetensors"))
    merged = load_frozen_tokenizer(config_file, [tmp_path / "changed.safetensors", checkpoint])
    key = next(iter(changed))
    assert torch.equal(merged.state_dict()[key], saved[key])
    merged = load_frozen_tokenizer(config_file, [checkpoint, tmp_path / "changed.safetensors"])
    assert torch.equal(merged.state_dict()[key], changed[key])

    with pytest.raises(UserError, match="no weights"):
        load_frozen_tokenizer(config_file, [])
    not_a_tokenizer = tmp_path / "photos.py"
    not_a_tokenizer.write_text(
        dump_config(
            ARRunConfig(
                data=TokenFileConfig(path="x"),
                optimization=OptimizationConfig(),
                loop=LoopConfig(iters=1),
            )
        )
    )
    with pytest.raises(UserError, match="not a tokenizer run"):
        load_frozen_tokenizer(not_a_tokenizer, [checkpoint])


# ------------------------------------------------------------------ token files ----


def test_token_file_round_trip(tmp_path: Path) -> None:
    tokens = torch.randint(0, 50, (5, 2, 3))
    categories = torch.tensor([4, 0, 2, 2, 1])
    ids = ["a/1", "b/2", "ü/3", "", "e"]
    path = tmp_path / "t.safetensors"
    write_token_file(path, tokens, categories, ids, codebook_size=50)
    header = read_token_file_header(path)
    assert (header.num, header.grid, header.codebook_size) == (5, (2, 3), 50)

    dataset = TokenFileDataset(path)
    assert len(dataset) == 5 and dataset.num_classes_needed() == 5
    batch = collate([dataset[i] for i in range(5)])
    assert torch.equal(batch["tokens"], tokens) and batch["tokens"].dtype == torch.int64
    assert torch.equal(batch["category"], categories)
    assert batch["id"] == ids
    assert set(load_file(str(path))) == {"tokens", "categories", "ids"}

    with pytest.raises(ValueError, match="outside codebook_size"):
        write_token_file(path, tokens, categories, ids, codebook_size=10)
    with pytest.raises(ValueError, match="5 token grids"):
        write_token_file(path, tokens, categories[:4], ids)
    save_file({"tokens": tokens}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match="not a vq token file"):
        read_token_file_header(tmp_path / "other.safetensors")
    with pytest.raises(UserError, match="does not exist"):
        read_token_file_header(tmp_path / "missing.safetensors")


# ------------------------------------------------------------------ configs --------


@pytest.mark.parametrize("path", AR_CONFIGS, ids=lambda p: p.stem)
def test_ar_configs_build_the_reference_recipe(path: Path, tmp_path: Path) -> None:
    options = {"ir_config": "work_dirs/dec/llamagen.py", "ir_state_dict": "d.pth"}
    config = load_config(path, {**options, "it_state_dict": "t.pth"})
    assert isinstance(config, ARRunConfig)
    assert config.tokenizer is not None
    assert config.tokenizer.config == Path("work_dirs/dec/llamagen.py")
    assert config.tokenizer.state_dicts == [Path("d.pth"), Path("t.pth")]  # later wins
    opt = config.optimization
    assert (opt.optimizer.kind, opt.optimizer.lr, opt.optimizer.betas) == (
        "adamw",
        1e-4,
        (0.9, 0.98),
    )
    assert (opt.optimizer.weight_decay, opt.optimizer.eps) == (0.2, 1e-6)
    assert (opt.schedule.kind, opt.schedule.warmup_iters, opt.schedule.min_lr) == ("cosine", 0, 0)
    assert config.loop.iters == 260_000 and config.loop.visual_interval == 500
    assert (config.loader.batch_size, config.loader.batch_size_is_global) == (96, True)
    assert config.data == ImageNetConfig(image_size=256, augmentation="weak")
    assert config.num_classes == 1000
    s = config.sampling
    assert (s.temperature, s.top_k, s.top_p) == (1.0, 600, 0.92)

    guided = "_cfg_" in path.stem
    assert config.network.null_class is guided
    assert config.network.label_dropout == (0.1 if guided else 0.0)
    assert s.guidance_scale == (1.75 if guided else 1.0)
    transformer = "gpt2" if "gpt2" in path.stem else "llama"
    assert (config.network.architecture, config.network.preset) == (transformer, "medium")
    expected_pretrained = (
        Path("pretrained/huggingface/gpt2-medium") if transformer == "gpt2" else None
    )
    assert config.network.pretrained == expected_pretrained
    assert config.strategy.kind == path.stem.rsplit("_", 1)[1]

    # the options of the reference, and the resolved dump loads back to the same config
    small = load_config(path, {**options, "iters": 100, "batch_size": 8, "token_file": "t.st"})
    assert (small.loop.iters, small.loader.batch_size) == (100, 8)
    assert small.data == TokenFileConfig(path=Path("t.st"))
    # the options every ImageNet config shares land where they say
    varied = load_config(
        path,
        {**options, "lr": 3e-4, "image_size": 128, "data_root": "/datasets/in1k", "workers": 2,
         "strategy": "ddp"},
    )  # fmt: skip
    assert varied.optimization.optimizer.lr == 3e-4
    assert varied.data == ImageNetConfig(root="/datasets/in1k", image_size=128, augmentation="weak")
    assert (varied.loader.workers, varied.strategy.kind) == (2, "ddp")
    with pytest.raises(UserError, match=r"^option strategy 'zero': choose one of ddp, fsdp$"):
        load_config(path, {**options, "strategy": "zero"})
    (tmp_path / "resolved.py").write_text(dump_config(config))
    assert load_config(tmp_path / "resolved.py") == config
    with pytest.raises(UserError, match="ir_config"):
        load_config(path, {"iters": 10})


def test_fsdp_configs_make_each_transformer_block_one_unit() -> None:
    # LLaMA medium block: q, k, v, o (4 * 1024^2) + SwiGLU (3 * 1024 * 2816) + 2 RMSNorms
    medium = ProposalNetworkConfig(architecture="llama", preset="medium")
    assert transformer_block_parameters(medium) == 4 * 1024**2 + 3 * 1024 * 2816 + 2 * 1024
    fsdp = load_config(
        AR_CONFIGS[-1], {"ir_config": "c.py", "ir_state_dict": "w.pth"}
    )  # c2i_llama_medium_imagenet_fsdp
    assert fsdp.strategy.kind == "fsdp"
    assert fsdp.strategy.fsdp_min_params == transformer_block_parameters(medium)

    for architecture in ("llama", "gpt2"):
        cfg = ProposalNetworkConfig(
            architecture=architecture, preset="tiny", overrides={"depth": 3}
        )
        with torch.device("meta"):
            model = build_proposal_network(cfg, codebook_size=64, num_classes=10)
        units = _shard_units(model, transformer_block_parameters(cfg))
        blocks = model.layers if architecture == "llama" else model.transformer.h
        assert units == list(blocks), architecture


def test_demo_config_builds_with_a_tokenizer_or_a_token_file() -> None:
    config = load_config(DEMO, {"ir_config": "c.py", "ir_state_dict": "w"})
    assert isinstance(config, ARRunConfig) and config.num_classes == 9
    assert load_config(DEMO, {"token_file": "t.safetensors"}).tokenizer is None
    with pytest.raises(UserError, match="tokenizer is required"):
        load_config(DEMO, {})


# ------------------------------------------------------------------ training -------


def _train(
    work: Path, name: str, tokenizer: tuple[Path, Path], options: list[str], *args: str
) -> int:
    """``train NAME configs/demo/ar_photos.py`` on the tiny tokenizer at 16 px (4x4 tokens)."""
    config_file, checkpoint = tokenizer
    options = [
        f"ir_config::{config_file}",
        f"ir_state_dict::{checkpoint}",
        "image_size:16",
        *options,
    ]
    return train_main(
        [name, str(DEMO), "--work-dirs", str(work), *args, "--config-options", *options]
    )


@pytest.mark.slow
def test_training_lowers_the_loss_resumes_exactly_and_never_saves_the_tokenizer(
    tokenizer_run: tuple[Path, Path], tmp_path: Path
) -> None:
    # GPT-2 has dropout and the guided model label dropout: both need the RNG restored.
    # The cosine schedule is pinned to 16 iterations so that the 8-iteration run shares it;
    # 45 photos in batches of 4 make iteration 8 a resume in the middle of an epoch.
    overrides = [
        "--override",
        ".loop.log_interval:1",
        ".optimization.schedule.total_iters:16",
        ".visual_samples:2",
    ]

    def train(name: str, iters: int, *extra: str) -> int:
        options = ["transformer::gpt2", "batch_size:4", "lr:3e-3", f"iters:{iters}"]
        return _train(tmp_path, name, tokenizer_run, options, *overrides, *extra)

    assert train("straight", 16) == 0
    assert train("resumed", 8) == 0
    assert train("resumed", 16, "--auto-resume") == 0

    final = tmp_path / "straight" / "checkpoints" / "iter_16" / "models"
    straight = load_file(str(final / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed/checkpoints/iter_16/models/model.safetensors"))
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key

    # the checkpoint holds the network only: no tokenizer tensor, no extra file
    assert sorted(p.name for p in final.iterdir()) == ["model.safetensors"]
    tokenizer_keys = set(read_weights(tokenizer_run[1]))
    assert straight.keys().isdisjoint(tokenizer_keys)
    assert all(k.startswith(("transformer.", "lm_head.")) for k in straight)

    losses = _losses(tmp_path, "straight")
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses
    assert (tmp_path / "straight" / "visuals" / "iter_16.png").is_file()


def _class_token_file(path: Path, codebook_size: int | None = NUM_CODES) -> Path:
    """36 4x4 grids, 4 per class of 9; every grid of class c is the same ramp from 7c."""
    categories = torch.arange(36) % 9
    tokens = (categories[:, None] * 7 + torch.arange(16)) % NUM_CODES  # (36, 16)
    ids = [f"photo{i}" for i in range(36)]
    write_token_file(path, tokens.view(36, 4, 4), categories, ids, codebook_size=codebook_size)
    return path


@pytest.mark.slow
def test_training_on_a_token_file_without_a_tokenizer(tmp_path: Path) -> None:
    tokens = _class_token_file(tmp_path / "tokens.safetensors")
    argv = ["tok", str(DEMO), "--work-dirs", str(tmp_path), "--override", ".loop.log_interval:1"]
    options = [f"token_file::{tokens}", "batch_size:4", "lr:1e-2", "iters:12"]
    assert train_main([*argv, "--config-options", *options]) == 0
    losses = _losses(tmp_path, "tok")
    assert len(losses) == 12
    assert losses[0] == pytest.approx(torch.log(torch.tensor(32.0)).item(), abs=1e-3)  # zero head
    assert sum(losses[-3:]) / 3 < 0.6 * losses[0], losses
    checkpoint = load_file(str(tmp_path / "tok/checkpoints/iter_12/models/model.safetensors"))
    assert checkpoint["embed_tokens.weight"].shape[0] == 9 + 1 + NUM_CODES  # classes, null, codes


def test_bad_token_files_and_missing_gpt2_weights_fail_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def train(token_file: Path, *overrides: str) -> str:
        argv = ["bad", str(DEMO), "--work-dirs", str(tmp_path), "--override", *overrides]
        argv += ["--config-options", f"token_file::{token_file}", "transformer::gpt2"]
        assert train_main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()  # info logs, then the error
        assert [line for line in lines if line.startswith("error:")] == lines[-1:], lines
        return lines[-1]

    unsized = _class_token_file(tmp_path / "unsized.safetensors", codebook_size=None)
    assert "does not record codebook_size" in train(unsized)
    tokens = _class_token_file(tmp_path / "tokens.safetensors")
    assert "9 classes but num_classes is 4" in train(tokens, ".num_classes:4")
    missing = tmp_path / "nowhere" / "gpt2-medium"
    assert str(missing / "config.json") in train(tokens, f".network.pretrained::{missing}")


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp_training_and_its_visuals_on_two_ranks(
    tokenizer_run: tuple[Path, Path], tmp_path: Path
) -> None:
    # one FSDP unit per LLaMA block; the visuals generate through the sharded network
    block = transformer_block_parameters(ProposalNetworkConfig(architecture="llama", preset="tiny"))
    overrides = ["--override", ".strategy.kind::fsdp", f".strategy.fsdp_min_params:{block}"]
    config_file, checkpoint = tokenizer_run
    argv = ["fsdp", str(DEMO), "--work-dirs", str(tmp_path), *overrides, "--config-options"]
    argv += [f"ir_config::{config_file}", f"ir_state_dict::{checkpoint}", "image_size:16"]
    argv += ["iters:3", "batch_size:4"]
    assert run_distributed(train_main, 2, argv) == [0, 0]
    assert (tmp_path / "fsdp" / "visuals" / "iter_3.png").is_file()
    assert (
        consolidate_main(
            [str(tmp_path / "fsdp/checkpoints/iter_3"), str(tmp_path / "model.safetensors")]
        )
        == 0
    )
    weights = load_file(str(tmp_path / "model.safetensors"))
    assert weights.keys().isdisjoint(read_weights(checkpoint))  # no tokenizer tensor
    assert "lm_head.weight" in weights and weights["lm_head.weight"].abs().sum() > 0
