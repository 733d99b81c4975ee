"""BEiT v2 VQ-KD converter: a synthetic checkpoint with BEiT v2's key names and extras."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from vq.core.errors import UserError
from vq.tokenizers.api import Tokenizer
from vq.tokenizers.convert import convert_checkpoint
from vq.tokenizers.models.vqkd import VQKDConfig, VQKDTokenizer
from vq.tokenizers.quantizers import VectorQuantizerConfig
from vq.tokenizers.vit import ViTConfig

NUM_CODES, CODE_DIM, TEACHER_DIM = 16, 8, 12


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_vqkd() -> VQKDTokenizer:
    """32 px images -> 4x4 grid; 32-wide ViTs with 16-d heads (head_dim=16 below)."""
    torch.manual_seed(0)
    model = VQKDTokenizer(
        VQKDConfig(
            encoder=ViTConfig.preset("tiny", out_dim=CODE_DIM),
            quantizer=VectorQuantizerConfig.preset("vqkd", NUM_CODES, CODE_DIM),
            decoder=ViTConfig.preset(
                "tiny", patch_size=1, in_chans=CODE_DIM, depth=1, out_dim=TEACHER_DIM
            ),
        )
    )
    with torch.no_grad():  # a trained (unit-norm) codebook
        model.quantizer.codebook.copy_(F.normalize(torch.randn(NUM_CODES, CODE_DIM), dim=1))
        model.quantizer.initialized.fill_(True)
    return model.eval()


def beit_checkpoint(model: VQKDTokenizer, with_decoder: bool = True) -> dict:
    """``model``'s weights under BEiT v2's names, with the entries its checkpoints carry."""
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("quantizer."):
            continue
        if key.startswith("decoder.") and not with_decoder:
            continue
        for ours, theirs in (("encoder.task_layer.", "encode_task_layer."),
                             ("decoder.task_layer.", "decode_task_layer.")):  # fmt: skip
            if key.startswith(ours):
                key = theirs + key[len(ours) :]
        state[key] = value.clone()
    codebook = model.quantizer.codebook.detach().clone()
    state |= {
        "quantize.embedding.weight": codebook,
        "quantize.embedding.cluster_size": torch.rand(NUM_CODES),
        "quantize.embedding.embed_avg": torch.randn(NUM_CODES, CODE_DIM),
        "quantize.embedding.initted": torch.tensor([1.0]),
        "quantize.cluster_size": torch.rand(NUM_CODES),
        "teacher_model.visual.proj": torch.randn(4, 4),
        "scaling_layer.shift": torch.rand(1, 3, 1, 1),
        "scaling_layer.scale": torch.rand(1, 3, 1, 1),
    }
    return {"model": state, "epoch": 3}


def images() -> torch.Tensor:
    return torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(4)).to(
        torch.uint8
    )


def beit_ids(model: VQKDTokenizer, x: torch.Tensor) -> torch.Tensor:
    """BEiT v2's quantizer: squared L2 between l2-normalised features and codes."""
    with torch.no_grad():
        z = model.encoder(x.float() / 127.5 - 1)  # (B, D, h, w)
    flat = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, CODE_DIM), dim=1)
    e = model.quantizer.codebook
    d = flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * flat @ e.t()
    return d.argmin(1).reshape(z.shape[0], z.shape[2], z.shape[3])


def test_with_decoder_reproduces_tokens_and_teacher_predictions(tmp_path):
    model = tiny_vqkd()
    torch.save(beit_checkpoint(model), tmp_path / "vqkd.pth")
    conversion = convert_checkpoint(
        "beitv2", tmp_path / "vqkd.pth", tmp_path / "out", {"head_dim": 16}
    )
    tokenizer = Tokenizer.from_pretrained(tmp_path / "out")

    x = images()
    ids = tokenizer.encode(x)
    assert torch.equal(ids, beit_ids(model, x))
    assert len(ids.unique()) > 3
    with torch.no_grad():
        assert torch.equal(tokenizer.model.predict_features(ids), model.predict_features(ids))
    assert tokenizer.config == model.config
    assert tokenizer.image_size == 32 and tokenizer.omitted == ()
    assert "teacher_model.visual.proj" in conversion.dropped
    assert "quantize.embedding.embed_avg" in conversion.dropped


def test_without_decoder_drops_it_and_never_emits_an_empty_key(tmp_path):
    model = tiny_vqkd()
    torch.save(beit_checkpoint(model), tmp_path / "vqkd.pth")
    options = {"head_dim": 16, "with_decoder": False}
    conversion = convert_checkpoint("beitv2", tmp_path / "vqkd.pth", tmp_path / "out", options)
    saved = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert "" not in saved
    assert not any(k.startswith("decoder.") for k in saved)
    assert "decode_task_layer.2.weight" in conversion.dropped

    tokenizer = Tokenizer.from_pretrained(tmp_path / "out")
    assert tokenizer.omitted == ("decoder",) and tokenizer.model.decoder is None
    x = images()
    assert torch.equal(tokenizer.encode(x), beit_ids(model, x))
    assert torch.equal(tokenizer.codes(tokenizer.encode(x)), model.codes(tokenizer.encode(x)))


def test_checkpoint_problems_are_user_errors(tmp_path):
    model = tiny_vqkd()
    path = tmp_path / "vqkd.pth"

    torch.save(beit_checkpoint(model, with_decoder=False), path)
    with pytest.raises(UserError, match="has no decoder"):
        convert_checkpoint("beitv2", path, options={"head_dim": 16})

    checkpoint = beit_checkpoint(model)
    checkpoint["model"]["quantize.embedding.initted"] = torch.tensor([0.0])
    torch.save(checkpoint, path)
    with pytest.raises(UserError, match="never initialised"):
        convert_checkpoint("beitv2", path, options={"head_dim": 16})

    torch.save(beit_checkpoint(model), path)
    with pytest.raises(UserError, match="not divisible by head_dim 64"):
        convert_checkpoint("beitv2", path)  # 32-wide tiny ViT with BEiT's 64-d heads
