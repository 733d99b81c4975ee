"""Loading Hugging Face GPT-2 weights from a local directory, without `transformers`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional as F

from vq.core.errors import UserError
from vq.generators.config import ProposalNetworkConfig, build_proposal_network
from vq.generators.gpt2 import GPT2, load_hf_gpt2

LAYERS, WIDTH, HEADS, POSITIONS, HF_VOCAB = 2, 32, 4, 16, 40


def write_hf_checkpoint(directory: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """A random GPT-2 in HF's key names and Conv1D (in, out) orientation."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return 0.2 * torch.randn(shape, generator=g)

    sd = {"wte.weight": rand(HF_VOCAB, WIDTH), "wpe.weight": rand(POSITIONS, WIDTH)}
    for i in range(LAYERS):
        p = f"h.{i}."
        sd |= {
            p + "ln_1.weight": 1 + rand(WIDTH), p + "ln_1.bias": rand(WIDTH),
            p + "attn.c_attn.weight": rand(WIDTH, 3 * WIDTH), p + "attn.c_attn.bias": rand(3 * WIDTH),
            p + "attn.c_proj.weight": rand(WIDTH, WIDTH), p + "attn.c_proj.bias": rand(WIDTH),
            p + "ln_2.weight": 1 + rand(WIDTH), p + "ln_2.bias": rand(WIDTH),
            p + "mlp.c_fc.weight": rand(WIDTH, 4 * WIDTH), p + "mlp.c_fc.bias": rand(4 * WIDTH),
            p + "mlp.c_proj.weight": rand(4 * WIDTH, WIDTH), p + "mlp.c_proj.bias": rand(WIDTH),
            p + "attn.bias": torch.tril(torch.ones(1, 1, POSITIONS, POSITIONS)),  # HF mask buffer
        }  # fmt: skip
    sd |= {"ln_f.weight": 1 + rand(WIDTH), "ln_f.bias": rand(WIDTH)}
    directory.mkdir(parents=True, exist_ok=True)
    save_file({prefix + k: v.contiguous() for k, v in sd.items()}, directory / "model.safetensors")
    config = {
        "model_type": "gpt2",
        "n_layer": LAYERS,
        "n_embd": WIDTH,
        "n_head": HEADS,
        "n_positions": POSITIONS,
        "vocab_size": HF_VOCAB,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
    }
    (directory / "config.json").write_text(json.dumps(config))
    return sd


def reference_logits(sd: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """GPT-2 written directly on HF tensors: Conv1D is x @ W + b, causal softmax attention."""
    T, D = tokens.shape[1], WIDTH // HEADS

    def ln(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, (WIDTH,), sd[name + ".weight"], sd[name + ".bias"], 1e-5)

    def conv1d(x: torch.Tensor, name: str) -> torch.Tensor:
        return x @ sd[name + ".weight"] + sd[name + ".bias"]

    x = sd["wte.weight"][tokens] + sd["wpe.weight"][:T]
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    for i in range(LAYERS):
        q, k, v = conv1d(ln(x, f"h.{i}.ln_1"), f"h.{i}.attn.c_attn").split(WIDTH, dim=-1)
        q, k, v = (t.unflatten(-1, (HEADS, D)).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2) / math.sqrt(D)).masked_fill(future, float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(1, 2).flatten(2)
        x = x + conv1d(y, f"h.{i}.attn.c_proj")
        hidden = F.gelu(conv1d(ln(x, f"h.{i}.ln_2"), f"h.{i}.mlp.c_fc"), approximate="tanh")
        x = x + conv1d(hidden, f"h.{i}.mlp.c_proj")
    return ln(x, "ln_f") @ sd["wte.weight"].T


@pytest.mark.parametrize("prefix", ["", "transformer."])
def test_loaded_model_matches_hf_math(tmp_path: Path, prefix: str) -> None:
    sd = write_hf_checkpoint(tmp_path, prefix)
    model = GPT2.from_pretrained(tmp_path, vocab_size=HF_VOCAB).eval()
    assert (model.cfg.depth, model.cfg.width, model.cfg.max_seq_len) == (2, 32, 16)
    tokens = torch.randint(0, HF_VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model(tokens), reference_logits(sd, tokens), atol=1e-5, rtol=1e-5)


def test_vocabulary_is_truncated_or_extended(tmp_path: Path) -> None:
    sd = write_hf_checkpoint(tmp_path)
    tokens = torch.randint(0, 25, (1, 7), generator=torch.Generator().manual_seed(2))
    expected = reference_logits(sd, tokens)  # (1, 7, 40)

    small = GPT2.from_pretrained(tmp_path, vocab_size=25).eval()  # truncated, like 50257 -> vocab
    torch.testing.assert_close(small(tokens), expected[..., :25], atol=1e-5, rtol=1e-5)

    torch.manual_seed(0)
    large = GPT2.from_pretrained(tmp_path, vocab_size=60).eval()
    torch.testing.assert_close(large(tokens)[..., :HF_VOCAB], expected, atol=1e-5, rtol=1e-5)
    new_rows = large.transformer.wte.weight[HF_VOCAB:]
    assert new_rows.std().item() == pytest.approx(0.02, rel=0.15)
    assert large.lm_head.weight is large.transformer.wte.weight


def test_positions_are_truncated_to_the_model(tmp_path: Path) -> None:
    sd = write_hf_checkpoint(tmp_path)
    model = GPT2.from_preset("tiny", vocab_size=HF_VOCAB, width=WIDTH, max_seq_len=8)
    load_hf_gpt2(model, tmp_path)
    torch.testing.assert_close(model.transformer.wpe.weight, sd["wpe.weight"][:8])


def test_missing_files_and_mismatches_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nowhere/config.json is missing.*gpt2-medium"):
        GPT2.from_pretrained(tmp_path / "nowhere", vocab_size=10)
    write_hf_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(UserError, match="model.safetensors is missing"):
        GPT2.from_pretrained(tmp_path, vocab_size=10)
    with pytest.raises(UserError, match="n_embd=32 but the model has 64"):
        load_hf_gpt2(GPT2.from_preset("tiny", vocab_size=10), tmp_path)


def test_config_builds_a_pretrained_gpt2(tmp_path: Path) -> None:
    sd = write_hf_checkpoint(tmp_path)
    cfg = ProposalNetworkConfig(
        architecture="gpt2",
        preset="tiny",
        overrides={"width": WIDTH, "max_seq_len": POSITIONS},
        pretrained=tmp_path,
    )
    model = build_proposal_network(cfg, codebook_size=20, num_classes=10)  # vocab 31
    assert model.vocab_size == 31
    torch.testing.assert_close(model.transformer.wte.weight, sd["wte.weight"][:31])
    missing = cfg.model_copy(update={"pretrained": tmp_path / "absent"})
    with pytest.raises(UserError, match="absent"):
        build_proposal_network(missing, codebook_size=20, num_classes=10)
