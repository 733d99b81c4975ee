"""The classification probe: its configs, heads and features, training end to end, resuming,
and ``val``/``test`` top-1/top-5, on the tiny tokenizer run of ``test_ar`` (a random
``PixelTokenizer``, 32 codes of 8 dims, 4x4 grids at 16 px)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from safetensors.torch import load_file

from vq.core.configfile import dump_config, load_config
from vq.core.errors import UserError
from vq.core.tensorfiles import read_weights
from vq.train.cli import resolve_config, train_main
from vq.train.data import ImageNetConfig, PhotosConfig
from vq.train.eval_cli import command_main
from vq.train.probe_heads import AttentiveHead, HeadConfig, LinearHead, Probe
from vq.train.tokenizer_source import load_frozen_tokenizer
from vq.train.trainers.probe import FrozenFeatures, ProbeRunConfig, classification_rows

sys.path.insert(0, str(Path(__file__).parent))
from test_ar import NUM_CODES, _losses, make_tokenizer_run

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "configs" / "demo" / "probe_photos.py"
PROBE_CONFIGS = sorted((REPO / "configs" / "probe").glob("*_imagenet_ddp.py"))
TOKENIZER_OPTIONS = {"it_config": "work_dirs/t/t.py", "it_state_dict": "t.pth"}


@pytest.fixture(scope="module")
def tokenizer_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_tokenizer_run(tmp_path_factory.mktemp("tokenizer"))


# ------------------------------------------------------------------ configs --------


def test_there_are_six_probe_configs() -> None:
    assert [p.stem for p in PROBE_CONFIGS] == [
        "attentive_vqgan_imagenet_ddp",
        "attentive_vqkd_imagenet_ddp",
        "linear_cluster_imagenet_ddp",
        "linear_fsq_imagenet_ddp",
        "linear_vqgan_imagenet_ddp",
        "linear_vqkd_imagenet_ddp",
    ]


@pytest.mark.parametrize("path", PROBE_CONFIGS, ids=lambda p: p.stem)
def test_probe_configs_build_the_recipe(path: Path, tmp_path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, ProbeRunConfig) and config.trainer == "probe"
    head, family = path.stem.split("_")[:2]
    run = {
        "vqgan": "vqgan/8192_dd2_aglwg075_imagenet_ddp",
        "fsq": "fsq/8000_imagenet_ddp",
        "vqkd": "vqkd/clip_8192_imagenet_ddp",
        "cluster": "cluster/clip_8192_imagenet_ddp",
    }[family]
    name = run.split("/")[1]
    assert config.tokenizer.config == Path(f"work_dirs/{run}/{name}.py")
    assert config.tokenizer.state_dicts == [Path(f"work_dirs/{run}/checkpoints/latest")]
    size = 224 if family == "vqkd" else 256
    assert config.data == ImageNetConfig(image_size=size, augmentation="strong")
    assert (config.num_classes, config.features, config.head.kind) == (1000, "quantized", head)
    assert (config.loop.iters, config.loader.batch_size, config.loader.batch_size_is_global) == (
        30_000,
        4096,
        True,
    )
    opt, schedule = config.optimization.optimizer, config.optimization.schedule
    if head == "linear":
        assert (opt.kind, opt.lr, opt.momentum, opt.weight_decay) == ("sgd", 1.6, 0.9, 0.0)
        assert (schedule.kind, schedule.warmup_iters) == ("cosine", 0)
    else:
        assert (opt.kind, opt.lr, opt.weight_decay) == ("adamw", 1e-3, 0.05)
        assert (schedule.kind, schedule.warmup_iters) == ("cosine", 1000)
        assert (config.head.width, config.head.heads) == (256, 8)

    varied = load_config(
        path,
        {**TOKENIZER_OPTIONS, "features": "codes", "batch_size": 512, "iters": 10,
         "image_size": 128, "data_root": "/in1k", "strategy": "fsdp", "workers": 1},
    )  # fmt: skip
    assert varied.tokenizer.config == Path("work_dirs/t/t.py")
    assert varied.tokenizer.state_dicts == [Path("t.pth")]
    assert varied.features == "codes" and varied.loop.iters == 10
    assert varied.data == ImageNetConfig(root="/in1k", image_size=128, augmentation="strong")
    assert (varied.loader.batch_size, varied.loader.workers, varied.strategy.kind) == (
        512,
        1,
        "fsdp",
    )
    if head == "linear":  # the SGD rate follows the batch: 0.1 per 256 images
        assert varied.optimization.optimizer.lr == pytest.approx(0.2)
    assert load_config(path, {"lr": 0.5}).optimization.optimizer.lr == 0.5
    with pytest.raises(UserError, match="it_config needs it_state_dict"):
        load_config(path, {"it_config": "work_dirs/t/t.py"})
    with pytest.raises(UserError, match="features"):
        load_config(path, {"features": "pixels"})
    (tmp_path / "resolved.py").write_text(dump_config(config))
    assert load_config(tmp_path / "resolved.py") == config


def test_demo_config_needs_a_tokenizer_and_labelled_data() -> None:
    config = load_config(DEMO, TOKENIZER_OPTIONS)
    assert config.num_classes == 9 and config.data == PhotosConfig(
        image_size=32, augmentation="strong"
    )
    assert load_config(DEMO, {**TOKENIZER_OPTIONS, "head": "attentive"}).head.kind == "attentive"
    with pytest.raises(UserError, match="needs a tokenizer run"):
        load_config(DEMO, {})
    options = [f"{k}::{v}" for k, v in TOKENIZER_OPTIONS.items()]
    with pytest.raises(UserError, match="unlabelled"):
        resolve_config(DEMO, options, ['.data:dict(kind="folder", root="x")'])


# ------------------------------------------------------------------ heads ----------


def test_linear_head_is_the_mean_then_batch_norm_without_affine_then_linear() -> None:
    torch.manual_seed(0)
    head = LinearHead(dim=8, num_classes=5).train()
    assert [n for n, _ in head.named_parameters()] == ["linear.weight", "linear.bias"]
    assert float(head.linear.weight.detach().std()) < 0.02 and not head.linear.bias.any()
    tokens = torch.randn(6, 10, 8) * 3 + 2  # (B, N, D)
    mean = tokens.mean(1)
    normed = (mean - mean.mean(0)) / torch.sqrt(mean.var(0, unbiased=False) + 1e-6)
    assert torch.allclose(head(tokens), head.linear(normed), atol=1e-5)


def test_probe_reads_ids_through_its_own_embedding_and_features_as_they_are() -> None:
    torch.manual_seed(0)
    ids = torch.randint(0, NUM_CODES, (3, 4, 4))
    on_codes = Probe(HeadConfig(), dim=8, num_classes=9, num_codes=NUM_CODES).eval()
    assert on_codes.embed is not None and on_codes.embed.weight.shape == (NUM_CODES, 8)
    assert on_codes(ids).shape == (3, 9)
    on_features = Probe(HeadConfig(), dim=8, num_classes=9).eval()
    assert on_features.embed is None
    # the same vectors given as a (B, D, h, w) map give the same logits
    on_features.load_state_dict(
        {k: v for k, v in on_codes.state_dict().items() if "embed" not in k}
    )
    vectors = on_codes.embed(ids).permute(0, 3, 1, 2)  # (B, 8, 4, 4)
    assert torch.allclose(on_features(vectors), on_codes(ids), atol=1e-6)


def test_attentive_head_pools_any_order_of_tokens_and_checks_its_heads() -> None:
    torch.manual_seed(0)
    head = AttentiveHead(dim=8, num_classes=5, width=16, heads=4).eval()
    tokens = torch.randn(2, 10, 8)
    logits = head(tokens)
    assert logits.shape == (2, 5)
    assert torch.allclose(head(tokens[:, torch.randperm(10)]), logits, atol=1e-5)
    assert not torch.allclose(head(tokens.flip(0)), logits)  # it does read the tokens
    with pytest.raises(ValidationError, match="not a multiple of heads"):
        HeadConfig(kind="attentive", width=10, heads=4)


def test_classification_rows_count_top1_and_top5_hits() -> None:
    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0], [0.0, 1, 2, 3, 4, 5]])
    rows = classification_rows(logits, torch.tensor([0, 0]))
    assert rows["top1_accuracy"].tolist() == [1.0, 0.0]
    assert rows["top5_accuracy"].tolist() == [1.0, 0.0]  # class 0 is 6th of 6 in row 2
    rows = classification_rows(logits, torch.tensor([1, 1]))
    assert rows["top1_accuracy"].tolist() == [0.0, 0.0]
    assert rows["top5_accuracy"].tolist() == [1.0, 1.0]
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 1]), reduction="none")
    assert torch.allclose(rows["loss"], expected)


# ------------------------------------------------------------------ features -------


def test_features_are_the_tokenizers_codes_ids_and_quantizer_input(
    tokenizer_run: tuple[Path, Path],
) -> None:
    config_file, checkpoint = tokenizer_run
    tokenizer = load_frozen_tokenizer(config_file, [checkpoint])
    image = PhotosConfig(image_size=16).build("val")[0]["image"][None]  # (1, 3, 16, 16)
    ids = tokenizer.encode(image)  # (1, 4, 4)
    quantized = FrozenFeatures(tokenizer, "quantized")
    assert quantized.dim == 8 and quantized.num_codes is None
    assert torch.equal(quantized(image), tokenizer.quantizer.codes(ids))
    codes = FrozenFeatures(tokenizer, "codes")
    assert codes.num_codes == NUM_CODES and torch.equal(codes(image), ids)
    pre_quant = FrozenFeatures(tokenizer, "pre_quant")(image)  # (1, 8, 4, 4)
    assert pre_quant.shape == (1, 8, 4, 4)
    assert torch.equal(tokenizer.quantizer.indices(pre_quant), ids)  # what it rounds
    assert not torch.allclose(pre_quant, quantized(image))


@pytest.mark.parametrize(
    "demo",
    ["vqkd_photos", "fsq_photos", pytest.param("cluster_photos", marks=pytest.mark.slow)],
)
def test_every_tokenizer_kind_gives_the_quantizer_input_and_its_code_vectors(demo: str) -> None:
    # VQ-KD: the encoder output before the codebook's l2 norm; FSQ: before the rounding;
    # Cluster: the teacher's features (the real EfficientNet-Lite0 of the demo)
    run = load_config(REPO / "configs" / "demo" / f"{demo}.py")
    tokenizer = run.build_tokenizer().eval()
    image = PhotosConfig(image_size=run.image_size).build("val")[0]["image"][None]
    ids = tokenizer.encode(image)  # (1, h, w)
    pre_quant = FrozenFeatures(tokenizer, "pre_quant")
    features = pre_quant(image)  # (1, D, h, w)
    assert features.shape == (1, pre_quant.dim, *ids.shape[1:])
    assert torch.equal(tokenizer.quantizer.indices(features), ids)
    assert torch.equal(
        FrozenFeatures(tokenizer, "quantized")(image), tokenizer.quantizer.codes(ids)
    )


# ------------------------------------------------------------------ end to end -----


def _separable_folder(root: Path, size: int = 16) -> Path:
    """Three classes of noisy images, dark / red / blue, 6 train and 3 val each."""
    rng = np.random.default_rng(0)
    colours = {"dark": (20, 20, 20), "red": (220, 40, 40), "blue": (40, 40, 220)}
    for split, count in (("train", 6), ("val", 3)):
        for name, colour in colours.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                noise = rng.integers(-30, 30, (size, size, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def _train(work: Path, name: str, tokenizer: tuple[Path, Path], iters: int, *args: str) -> int:
    config_file, checkpoint = tokenizer
    options = [f"it_config::{config_file}", f"it_state_dict::{checkpoint}", "image_size:16"]
    options += ["batch_size:6", f"iters:{iters}", *args]
    argv = [name, str(DEMO), "--work-dirs", str(work), "--override", ".loop.log_interval:1"]
    argv += [".optimization.schedule.total_iters:16"]  # shorter runs share the schedule
    return train_main([*argv, "--config-options", *options])


def _metrics(path: Path) -> dict[str, float]:
    return json.loads(path.read_text())["metrics"]


def test_probe_learns_a_separable_set_and_val_reports_top1(
    tokenizer_run: tuple[Path, Path], tmp_path: Path
) -> None:
    folder = _separable_folder(tmp_path / "images")
    data = f'.data:dict(kind="image_folder", root="{folder}", image_size=16)'
    config_file, checkpoint = tokenizer_run
    options = [f"it_config::{config_file}", f"it_state_dict::{checkpoint}", "image_size:16"]
    options += ["batch_size:6", "iters:16", "lr:0.3", "features::pre_quant"]
    argv = ["colours", str(DEMO), "--work-dirs", str(tmp_path), "--override", data]
    argv += [".num_classes:3", ".loop.log_interval:1", ".loop.checkpoint_interval:16"]
    assert train_main([*argv, "--config-options", *options]) == 0
    losses = _losses(tmp_path, "colours")
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4, losses

    resolved = tmp_path / "colours" / "probe_photos.py"
    assert command_main("val", ["colours", str(resolved), "--work-dirs", str(tmp_path)]) == 0
    metrics = _metrics(tmp_path / "colours" / "val" / "iter_16" / "metrics.json")
    assert list(metrics) == ["loss", "top1_accuracy", "top5_accuracy"]
    assert metrics["top1_accuracy"] > 2 / 3  # chance: 1/3
    assert metrics["top5_accuracy"] == 1.0  # three classes: always among the top five


@pytest.mark.slow
def test_demo_resumes_exactly_saves_only_the_probe_and_test_reports_it(
    tokenizer_run: tuple[Path, Path], tmp_path: Path
) -> None:
    # 45 photos in batches of 6: iteration 8 resumes in the middle of the first epoch
    assert _train(tmp_path, "straight", tokenizer_run, 16, "features::codes") == 0
    assert _train(tmp_path, "resumed", tokenizer_run, 8, "features::codes") == 0
    assert _train(tmp_path, "resumed", tokenizer_run, 16, "features::codes", "--auto-resume") == 0
    final = tmp_path / "straight" / "checkpoints" / "iter_16" / "models"
    straight = load_file(str(final / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed/checkpoints/iter_16/models/model.safetensors"))
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    assert straight.keys().isdisjoint(read_weights(tokenizer_run[1]))
    assert {k.split(".")[0] for k in straight} == {"embed", "head"}
    assert "head.norm.running_mean" in straight  # batch-norm statistics resume too

    resolved = tmp_path / "straight" / "probe_photos.py"
    argv = ["straight", str(resolved), "--work-dirs", str(tmp_path)]
    assert command_main("test", [*argv, "--load-model-from", str(final.parent)]) == 0
    metrics = _metrics(tmp_path / "straight_test" / "metrics.json")
    assert 0.0 <= metrics["top1_accuracy"] <= metrics["top5_accuracy"] <= 1.0
    assert metrics["loss"] > 0.0


@pytest.mark.parametrize("flag", ["--tokenize", "--ten-crop"])
def test_test_refuses_token_writing_on_a_probe_run_in_one_line(
    flag: str, tokenizer_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file, checkpoint = tokenizer_run
    argv = ["p", str(DEMO), "--work-dirs", str(tmp_path), "--load-model-from", str(checkpoint)]
    argv += [flag, "--config-options", f"it_config::{config_file}"]
    argv += [f"it_state_dict::{checkpoint}", "image_size:16"]
    assert command_main("test", argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], lines
    assert "writes a tokenizer's codes" in lines[-1]
