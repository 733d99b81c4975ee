"""The bidirectional MaskGIT network and its config: shapes, init, full attention, sizes."""

from __future__ import annotations

import math

import pydantic
import pytest
import torch

from vq.generators import (
    MaskedNetworkConfig,
    MaskedTokenNetwork,
    MaskGIT,
    build_masked_network,
    masked_token_loss,
)
from vq.generators.llama import PRESETS as LLAMA_PRESETS
from vq.generators.llama import Llama
from vq.generators.maskgit import PRESETS


def tiny(**overrides: int | float) -> MaskGIT:
    torch.manual_seed(0)
    return MaskGIT.from_preset("tiny", codebook_size=16, num_classes=4, grid=(3, 4), **overrides)


def test_shapes_ids_and_a_zero_head_that_starts_at_log_codebook() -> None:
    model = tiny()
    assert isinstance(model, MaskedTokenNetwork)
    assert (model.mask_id, model.null_id, model.grid) == (16, 4, (3, 4))
    tokens = torch.randint(0, 17, (2, 12))  # codes and the mask id
    logits = model(torch.tensor([0, 4]), tokens)  # the null class is a valid input
    assert logits.shape == (2, 12, 16)  # grid positions only, codebook only
    assert torch.count_nonzero(logits) == 0
    mask = torch.ones(2, 12, dtype=torch.bool)
    loss = masked_token_loss(logits, tokens.clamp(max=15), mask)
    assert loss.item() == pytest.approx(math.log(16))
    assert not any(n.endswith("bias") for n, _ in model.named_parameters())
    with pytest.raises(ValueError, match="11 tokens per sample"):
        model(torch.tensor([0]), tokens[:1, :11])


def test_attention_is_bidirectional() -> None:
    model = tiny()
    torch.nn.init.normal_(model.lm_head.weight, std=0.5)
    classes = torch.tensor([1])
    tokens = torch.randint(0, 16, (1, 12), generator=torch.Generator().manual_seed(0))
    later = tokens.clone()
    later[0, -1] = 16  # mask the last cell
    first, changed = model(classes, tokens), model(classes, later)
    assert not torch.allclose(first[0, 0], changed[0, 0])  # the first cell sees the last
    assert not torch.allclose(first[0, 5], changed[0, 5])
    other_class = model(torch.tensor([2]), tokens)
    assert not torch.allclose(first[0, 0], other_class[0, 0])  # every cell sees the class


def test_positions_are_learned_and_distinguish_equal_tokens() -> None:
    model = tiny()
    torch.nn.init.normal_(model.lm_head.weight, std=0.5)
    assert model.embed_positions.weight.shape == (13, 64)  # class + 12 cells
    logits = model(torch.tensor([0]), torch.full((1, 12), 16))  # all masked
    assert not torch.allclose(logits[0, 0], logits[0, 1])


def test_dropout_acts_in_training_only() -> None:
    model = tiny(dropout=0.5)
    torch.nn.init.normal_(model.lm_head.weight, std=0.5)
    classes, tokens = torch.tensor([0, 1]), torch.randint(0, 16, (2, 12))
    assert not torch.equal(model(classes, tokens), model(classes, tokens))
    model.eval()
    assert torch.equal(model(classes, tokens), model(classes, tokens))


@pytest.mark.slow  # the first meta-device normal_ imports torch's decompositions (~8 s cold)
def test_presets_are_the_ar_sizes_with_the_ar_trunk() -> None:
    assert PRESETS == LLAMA_PRESETS and {"tiny", "B", "medium", "L"} <= set(PRESETS)
    with torch.device("meta"):
        nar = MaskGIT.from_preset("medium", codebook_size=8192, num_classes=1000, grid=(16, 16))
        ar = Llama.from_preset("medium", vocab_size=9193)
    assert (nar.cfg.depth, nar.cfg.width, nar.cfg.heads, nar.cfg.ffn_hidden) == (24, 1024, 16, 2816)

    def trunk(model: torch.nn.Module) -> int:
        return sum(p.numel() for n, p in model.named_parameters() if n.startswith("layers."))

    assert trunk(nar) == trunk(ar)  # the same blocks (fused q/k/v, same count)
    # embeddings: 1001 classes + 8193 codes + 257 positions, head 8192 codes
    others = sum(p.numel() for p in nar.parameters()) - trunk(nar)
    assert others == (1001 + 8193 + 257 + 8192) * 1024 + 1024
    with pytest.raises(ValueError, match="unknown maskgit preset"):
        MaskGIT.from_preset("huge", 16, 4, (4, 4))


def test_config_builds_the_network_of_its_preset() -> None:
    cfg = MaskedNetworkConfig()
    assert (cfg.preset, cfg.label_dropout) == ("medium", 0.1)
    small = MaskedNetworkConfig(preset="tiny", overrides={"depth": 1, "dropout": 0.1})
    model = build_masked_network(small, codebook_size=16, num_classes=4, grid=(2, 2))
    assert (model.cfg.depth, model.cfg.dropout, model.cfg.num_tokens) == (1, 0.1, 4)
    assert model(torch.tensor([0]), torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 16)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"preset": "huge"}, "unknown maskgit preset"),
        ({"overrides": {"grid": 4}}, "not maskgit fields"),
        ({"overrides": {"heads": 5}}, "not divisible by heads"),
        ({"overrides": {"dropout": 1.0}}, "dropout must be"),
        ({"label_dropout": 1.0}, "label_dropout"),
        ({"null_class": False}, "Extra inputs"),
    ],
)
def test_invalid_masked_configs_are_rejected(fields: dict, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        MaskedNetworkConfig(**fields)
