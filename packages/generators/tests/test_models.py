"""Architecture tests: parameter counts, shapes, init, and cached vs full forward passes."""

from __future__ import annotations

import pytest
import torch

from vq.generators.gpt2 import GPT2
from vq.generators.llama import Llama, ffn_hidden_size

ARCHITECTURES = {"llama": Llama, "gpt2": GPT2}


def llama_param_count(vocab: int, depth: int, width: int, ffn: int) -> int:
    """Independent count: embedding + untied head, per block 4 attention + 3 SwiGLU matrices
    and two RMSNorm gains, plus the final norm (no biases)."""
    per_block = 4 * width * width + 3 * width * ffn + 2 * width
    return 2 * vocab * width + depth * per_block + width


def test_ffn_hidden_size_follows_llamagen() -> None:
    assert ffn_hidden_size(1024) == 2816
    assert ffn_hidden_size(768) == 2048
    assert ffn_hidden_size(1280) == 3584


@pytest.mark.slow  # the first meta-device normal_ imports torch's decompositions (~8 s cold)
def test_llama_medium_parameter_count() -> None:
    with torch.device("meta"):
        ours = Llama.from_preset("medium", vocab_size=9193)  # 1000 + 1 + 8192
        llamagen = Llama.from_preset("L", vocab_size=17385)  # 1000 + 1 + 16384
    count = sum(p.numel() for p in ours.parameters())
    assert ours.cfg.ffn_hidden == 2816
    assert count == pytest.approx(llama_param_count(9193, 24, 1024, 2816), rel=0.01)
    assert count == pytest.approx(327.2e6, rel=0.01)
    # The reference's medium network matches LlamaGen GPT-L (~343M), with 16384 codes.
    assert sum(p.numel() for p in llamagen.parameters()) == pytest.approx(343e6, rel=0.01)


def test_gpt2_medium_parameter_count() -> None:
    with torch.device("meta"):
        model = GPT2.from_preset("medium", vocab_size=50257)
    # HF gpt2-medium: 354.8M parameters with the tied head counted once.
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(354.8e6, rel=0.005)
    assert model.lm_head.weight is model.transformer.wte.weight


def test_llama_head_starts_at_zero_so_first_loss_is_log_vocab() -> None:
    torch.manual_seed(0)
    model = Llama.from_preset("tiny", vocab_size=37)
    logits = model(torch.randint(0, 37, (2, 5)))
    assert logits.shape == (2, 5, 37)
    assert torch.count_nonzero(logits) == 0
    assert not any(n.endswith("bias") for n, _ in model.named_parameters())


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_cached_forward_matches_full_forward(arch: str) -> None:
    """Prefill 3 tokens, a chunk of 4 after them (explicit mask), then single tokens."""
    torch.manual_seed(0)
    model = ARCHITECTURES[arch].from_preset("tiny", vocab_size=50).eval()
    if arch == "llama":
        torch.nn.init.normal_(model.lm_head.weight, std=0.02)  # non-trivial logits
    tokens = torch.randint(0, 50, (2, 10))
    full = model(tokens)  # (2, 10, 50)

    cache = model.make_cache(batch_size=2, max_len=10)
    pieces = [model(tokens[:, :3], cache, 0), model(tokens[:, 3:7], cache, 3)]
    pieces += [model(tokens[:, t : t + 1], cache, t) for t in range(7, 10)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-4)


def test_cache_is_written_in_place_without_regrowth() -> None:
    model = Llama.from_preset("tiny", vocab_size=20)
    cache = model.make_cache(batch_size=1, max_len=6)
    storage = [k.data_ptr() for k in cache.keys]
    for t in range(6):
        model(torch.tensor([[t]]), cache, t)
    assert [k.data_ptr() for k in cache.keys] == storage
    assert cache.keys[0].shape == (1, 4, 6, 16)
    assert torch.count_nonzero(cache.keys[0][:, :, 5]) > 0
    with pytest.raises(ValueError, match="holds 6 positions"):
        model(torch.tensor([[0]]), cache, 6)


def test_positions_beyond_the_maximum_are_rejected() -> None:
    model = GPT2.from_preset("tiny", vocab_size=20)  # max_seq_len 64
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros((1, 65), dtype=torch.long))
