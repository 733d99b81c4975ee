"""Pixel decoders on frozen VQ-KD / Cluster tokens: the decoder trainer and its configs.

The end-to-end tests run the real two-command pipeline on the embedded photos: a tiny
VQ-KD distilling the real EfficientNet-Lite0 (``configs/demo/vqkd_photos.py``) for a few
steps, then a pixel decoder on its tokens (``configs/demo/decoder_photos.py``) pointed at
the VQ-KD run's resolved config and checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vq.core import launch
from vq.core.configfile import dump_config, load_config
from vq.core.loop import Run, train
from vq.core.registry import TRAINERS
from vq.core.tensorfiles import load_weights, read_weights
from vq.decoders import DecodedTokenizer
from vq.tokenizers.autoencoders.vqgan import VQGANDecoderConfig
from vq.tokenizers.models.cluster import ClusterConfig
from vq.tokenizers.models.vqkd import VQKDConfig
from vq.tokenizers.vit import ViTConfig
from vq.train.cli import train_main
from vq.train.data import build_dataset, collate
from vq.train.tokenizer_source import load_frozen_tokenizer
from vq.train.trainers.decoder import DecoderRunConfig, DecoderTrainer

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs"
VQKD_DEMO = CONFIGS / "demo" / "vqkd_photos.py"
DECODER_DEMO = CONFIGS / "demo" / "decoder_photos.py"
DECODER_CONFIGS = [CONFIGS / "decoder" / "llamagen.py", CONFIGS / "decoder" / "vqgan.py"]
VQKD_IMAGENET = CONFIGS / "vqkd" / "clip_8192_imagenet_ddp.py"
CLUSTER_IMAGENET = CONFIGS / "cluster" / "clip_8192_imagenet_ddp.py"


# Stand-ins for the reference tokenizer configs while their files have not landed.
def psnr(reconstruction: torch.Tensor, image: torch.Tensor) -> float:
    """PSNR in dB of [-1, 1] images (peak-to-peak 2)."""
    mse = (reconstruction.clamp(-1, 1) - image).square().mean()
    return float(10 * torch.log10(4.0 / mse))


@pytest.fixture(scope="module")
def vqkd_run(tmp_path_factory) -> Path:
    """Work dir of a tiny VQ-KD trained through the train command for a few steps."""
    root = tmp_path_factory.mktemp("work_dirs")
    argv = ["demo/vqkd", str(VQKD_DEMO), "--work-dirs", str(root)]
    argv += ["--config-options", "iters:3", "batch_size:8"]
    assert train_main(argv) == 0
    return root / "demo" / "vqkd"


def train_decoder(
    vqkd_run: Path, root: Path, *options: str, resume: bool = False, weights_option: bool = False
) -> Path:
    """A decoder run whose tokenizer weights come from ``--load-model-from``, or from the
    config option ``it_state_dict`` with ``weights_option``."""
    weights = vqkd_run / "checkpoints" / "latest"
    argv = ["demo/decoder", str(DECODER_DEMO), "--work-dirs", str(root)]
    argv += ["--config-options", f"it_config::{vqkd_run / 'vqkd_photos.py'}", "batch_size:8"]
    if weights_option:
        argv += [*options, f"it_state_dict::{weights}"]
    else:
        argv += [*options, "--load-model-from", str(weights)]
    assert train_main(argv + (["--auto-resume"] if resume else [])) == 0
    return root / "demo" / "decoder"


@pytest.mark.slow
def test_decoder_learns_pixels_from_frozen_vqkd_tokens(vqkd_run: Path, tmp_path: Path) -> None:
    iters = 20
    run_dir = train_decoder(
        vqkd_run,
        tmp_path,
        f"iters:{iters}",
        f"checkpoint_interval:{iters}",
        f"discriminator_start:{iters}",  # reconstruction only: the GAN term trades PSNR
        "decoder::vit",
    )
    config = load_config(run_dir / "decoder_photos.py")
    assert isinstance(config, DecoderRunConfig)
    decoder_weights = run_dir / "checkpoints" / f"iter_{iters}"
    saved = load_file(str(decoder_weights / "models" / "model.safetensors"))
    assert saved and all(k.startswith(("pre_decode.", "pixel_decoder.")) for k in saved)

    val = build_dataset(config.data, "val")
    image = collate([val[i] for i in range(len(val))])["image"]  # the 9 fixed val crops

    def reconstruction_psnr(tokenizer: DecodedTokenizer) -> float:
        with torch.no_grad():
            return psnr(tokenizer.decode(tokenizer.encode(image)), image)

    torch.manual_seed(0)
    untrained = config.build_tokenizer().eval()
    assert load_weights(untrained, [vqkd_run / "checkpoints" / "latest"]).unexpected == []
    # the trained pair as the AR stage rebuilds it: resolved config + both checkpoints
    trained = load_frozen_tokenizer(
        run_dir / "decoder_photos.py", [decoder_weights, vqkd_run / "checkpoints" / "latest"]
    )
    assert isinstance(trained, DecodedTokenizer)
    before, after = reconstruction_psnr(untrained), reconstruction_psnr(trained)
    assert after > before + 1.0, (before, after)


@pytest.mark.slow
def test_decoder_training_leaves_every_tokenizer_tensor_unchanged(
    vqkd_run: Path, tmp_path: Path
) -> None:
    config = load_config(
        DECODER_DEMO,
        {
            "it_config": str(vqkd_run / "vqkd_photos.py"),
            "iters": 3,
            "batch_size": 4,
            "discriminator_start": 1,
        },
    )
    tokenizer_file = vqkd_run / "checkpoints" / "latest"
    device = launch.init_process_group()
    try:
        run = Run(
            config=config,
            work_dir=tmp_path,
            device=device,
            seed=0,
            load_model_from=[tokenizer_file],
        )
        trainer = DecoderTrainer(config, run)
        decoder_before = {
            k: v.clone() for k, v in trainer.decoded.pixel_decoder.state_dict().items()
        }
        train(run, trainer)
    finally:
        launch.destroy_process_group()

    model: DecodedTokenizer = trainer.decoded
    assert not any(m.training for m in model.tokenizer.modules())
    after = model.state_dict()
    original = read_weights(tokenizer_file)
    assert sorted(k for k in after if k.split(".")[0] in model.frozen_prefixes) == sorted(original)
    for key, tensor in original.items():
        assert torch.equal(after[key], tensor), key
    changed = [
        k
        for k, v in model.pixel_decoder.state_dict().items()
        if not torch.equal(v, decoder_before[k])
    ]
    assert changed  # while the decoder did learn


@pytest.mark.slow
def test_resumed_decoder_run_is_bit_identical(vqkd_run: Path, tmp_path: Path) -> None:
    """Straight with ``--load-model-from``; in halves with the weights as the config option
    ``it_state_dict``, so the resumed half finds them in the config alone."""
    options = ("checkpoint_interval:2", "discriminator_start:1", "decoder::vit")
    straight = train_decoder(vqkd_run, tmp_path / "straight", "iters:4", *options)
    halves = train_decoder(vqkd_run, tmp_path / "halves", "iters:2", *options, weights_option=True)
    assert not (halves / "checkpoints" / "iter_4").exists()
    resolved = load_config(halves / "decoder_photos.py")
    assert resolved.tokenizer_weights == [vqkd_run / "checkpoints" / "latest"]
    train_decoder(
        vqkd_run, tmp_path / "halves", "iters:4", *options, resume=True, weights_option=True
    )
    log = "".join(p.read_text() for p in (halves / "logs").glob("*.log"))
    assert "resumed from" in log and "--load-model-from" not in log

    for name in ("model", "discriminator"):
        a = load_file(str(straight / "checkpoints" / "iter_4" / "models" / f"{name}.safetensors"))
        b = load_file(str(halves / "checkpoints" / "iter_4" / "models" / f"{name}.safetensors"))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.slow
def test_decoder_weights_alone_are_refused(vqkd_run: Path, tmp_path: Path, capsys) -> None:
    """A decoder checkpoint without the tokenizer's would leave the tokenizer random."""
    run_dir = train_decoder(vqkd_run, tmp_path, "iters:1", "discriminator_start:1")
    argv = ["demo/again", str(DECODER_DEMO), "--work-dirs", str(tmp_path)]
    argv += ["--config-options", f"it_config::{vqkd_run / 'vqkd_photos.py'}"]
    argv += ["--load-model-from", str(run_dir / "checkpoints" / "latest")]
    err = _error_of(argv, capsys)
    assert "does not hold the tokenizer" in err and "decoder.blocks.0" in err


# ------------------------------------------------------------------ configs ---------


@pytest.mark.parametrize("decoder_config", DECODER_CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("it_config", [VQKD_IMAGENET, CLUSTER_IMAGENET], ids=["vqkd", "cluster"])
def test_reference_decoder_configs_build(decoder_config: Path, it_config: Path, tmp_path: Path):
    tokenizer_file = it_config
    expected = load_config(tokenizer_file).model
    config = load_config(decoder_config, {"it_config": str(tokenizer_file)})

    assert isinstance(config, DecoderRunConfig)
    assert TRAINERS.get(config.trainer) is DecoderTrainer
    assert config.model.tokenizer == expected
    assert config.model.pre_decode.channels == (expected.quantizer.dim, 256)
    assert isinstance(config.model.decoder, VQGANDecoderConfig)
    assert config.model.upsample_factor == 16 and config.data.image_size == 256
    llamagen = decoder_config.stem == "llamagen"
    assert config.loop.iters == (400_000 if llamagen else 260_000)
    assert config.loader.batch_size == (128 if llamagen else 96)
    assert config.gan.discriminator.depth == (3 if llamagen else 2)
    assert config.gan.discriminator_start == (20_000 if llamagen else 0)
    assert config.gan.adaptive_weight_gain == (None if llamagen else 0.75)
    assert config.gan.generator_weight == (0.5 if llamagen else 1.0)
    rec = config.reconstruction
    assert (rec.l1_weight, rec.l2_weight, rec.lpips_weight) == (
        (0, 1, 1) if llamagen else (1, 0, 1)
    )
    opt = config.optimization.optimizer
    assert (opt.lr, opt.betas) == ((1e-4, (0.9, 0.95)) if llamagen else (5.4e-5, (0.5, 0.9)))

    vit = load_config(decoder_config, {"it_config": str(tokenizer_file), "decoder": "vqkd_large"})
    assert isinstance(vit.model.decoder, ViTConfig) and vit.model.decoder.embed_dim == 1280
    assert vit.model.decoder.grid_size == 16 and vit.model.pre_decode.kind == "identity"

    resolved = tmp_path / "resolved.py"  # what a run writes into its work dir
    resolved.write_text(dump_config(config))
    assert load_config(resolved) == config
    tokenizer_kind = VQKDConfig if it_config == VQKD_IMAGENET else ClusterConfig
    assert isinstance(load_config(resolved).model.tokenizer, tokenizer_kind)


def test_demo_config_builds_with_both_decoders() -> None:
    for decoder in ("conv", "vit"):
        config = load_config(DECODER_DEMO, {"it_config": str(VQKD_DEMO), "decoder": decoder})
        assert isinstance(config, DecoderRunConfig)
        assert config.model.upsample_factor * 4 == config.data.image_size


def _error_of(argv: list[str], capsys) -> str:
    """The error of a train command that must fail as a user mistake: exit 2, one line."""
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_train_command_errors_are_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no pretrained/ nor data/ here
    weights = tmp_path / "tokenizer.safetensors"
    save_file({"unrelated": torch.zeros(1)}, str(weights))  # readable: the teacher fails first
    cluster = CLUSTER_IMAGENET
    vqkd = VQKD_IMAGENET
    base = ["decoder/x", str(DECODER_CONFIGS[0]), "--work-dirs", str(tmp_path / "w")]

    err = _error_of(
        [*base, "--config-options", f"it_config::{cluster}", "--load-model-from", str(weights)],
        capsys,
    )
    assert "teacher 'clip'" in err and "clip" in err and "not found" in err

    err = _error_of([*base, "--config-options", f"it_config::{vqkd}"], capsys)
    assert "--load-model-from" in err
    assert "it_state_dict" in err
    err = _error_of(
        [*base, "--config-options", f"it_config::{vqkd}", "--load-model-from", "missing/iter_1"],
        capsys,
    )
    assert "missing/iter_1" in err
    err = _error_of(
        [*base, "--config-options", f"it_config::{vqkd}", "it_state_dict::missing/iter_2"], capsys
    )
    assert err.startswith("error: it_state_dict missing/iter_2")
    vqgan = CONFIGS / "llamagen" / "vqgan_imagenet_ddp.py"
    err = _error_of([*base, "--config-options", f"it_config::{vqgan}"], capsys)
    assert "VQGANRunConfig" in err and "VQ-KD or Cluster" in err
    err = _error_of([*base, "--config-options", f"it_config::{vqkd}", "decoder::vit_huge"], capsys)
    assert "vit_huge" in err
