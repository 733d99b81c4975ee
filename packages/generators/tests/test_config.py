"""ProposalNetworkConfig validation and building."""

from __future__ import annotations

import pydantic
import pytest
import torch

from vq.generators import GPT2, Llama, ProposalNetworkConfig, build_proposal_network


def test_defaults_build_the_reference_llama_medium_on_meta() -> None:
    cfg = ProposalNetworkConfig()
    assert (cfg.architecture, cfg.preset, cfg.label_dropout, cfg.null_class) == (
        "llama", "medium", 0.1, True,
    )  # fmt: skip
    with torch.device("meta"):
        model = build_proposal_network(cfg, codebook_size=8192, num_classes=1000)
    assert isinstance(model, Llama)
    assert model.vocab_size == 9193
    assert (model.cfg.depth, model.cfg.width, model.cfg.heads, model.cfg.ffn_hidden) == (
        24, 1024, 16, 2816,
    )  # fmt: skip


def test_overrides_and_vocab_without_null_class() -> None:
    cfg = ProposalNetworkConfig(
        architecture="gpt2", preset="tiny", overrides={"depth": 1}, null_class=False,
        label_dropout=0.0,
    )  # fmt: skip
    model = build_proposal_network(cfg, codebook_size=16, num_classes=4)
    assert isinstance(model, GPT2)
    assert (model.vocab_size, model.cfg.depth) == (20, 1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"preset": "huge"}, "unknown llama preset"),
        ({"overrides": {"layers": 2}}, "not llama fields"),
        ({"null_class": False}, "needs null_class"),
        ({"label_dropout": 1.0}, "label_dropout"),
        ({"pretrained": "pretrained/gpt2"}, "gpt2' only"),
        ({"architecture": "mamba"}, "architecture"),
        ({"dropout": 0.1}, "Extra inputs"),
    ],
)
def test_invalid_configs_are_rejected(fields: dict, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        ProposalNetworkConfig(**fields)
