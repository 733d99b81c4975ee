"""Weight-decay groups: the ndim/name rule reproduces the reference's VQ-KD regex listing."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from vq.tokenizers.optim_groups import param_groups, split_decay
from vq.tokenizers.vit import ViT, ViTConfig

# The reference's VQ-KD groups, transcribed as regular expressions.
BLOCK = r"blocks\.\d+\."
REFERENCE_NO_DECAY = re.compile(
    r"_(en|de)coder\."
    r"(cls_token|pos_embed|patch_embed\.proj\.bias|fc_norm\.(weight|bias)"
    rf"|{BLOCK}norm[12]\.(weight|bias)"
    rf"|{BLOCK}attn\.(q_bias|v_bias|proj\.bias)"
    rf"|{BLOCK}mlp\.fc[12]\.bias"
    r"|task_layer\.[02]\.bias)"
)
REFERENCE_DECAY = re.compile(
    r"_(en|de)coder\."
    r"(patch_embed\.proj\.weight"
    rf"|{BLOCK}attn\.(qkv|proj)\.weight"
    rf"|{BLOCK}mlp\.fc[12]\.weight"
    r"|task_layer\.[02]\.weight)"
)


class TinyVQKD(nn.Module):
    """The VQ-KD parameter layout: encoder, decoder, and a codebook without gradients."""

    def __init__(self) -> None:
        super().__init__()
        self._encoder = ViT(ViTConfig.preset("tiny", depth=3))
        self._decoder = ViT(ViTConfig.preset("tiny", patch_size=1, in_chans=8, depth=1))
        self._quantizer = nn.Embedding(16, 8).requires_grad_(False)


def test_split_equals_the_reference_regex_listing() -> None:
    model = TinyVQKD()
    decay, no_decay = split_decay(model)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert set(no_decay) == {n for n in trainable if REFERENCE_NO_DECAY.fullmatch(n)}
    assert set(decay) == {n for n in trainable if REFERENCE_DECAY.fullmatch(n)}
    assert set(decay) | set(no_decay) == trainable  # every trainable parameter is listed
    assert "_quantizer.weight" not in decay | no_decay
    assert {"_encoder.cls_token", "_encoder.pos_embed", "_decoder.pos_embed"} <= set(no_decay)


def test_adamw_decays_only_the_weight_matrices() -> None:
    model = TinyVQKD()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    lr, weight_decay = 0.1, 0.5
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # with zero gradients AdamW only applies decay
    optimizer.step()
    decay, no_decay = split_decay(model)
    for name, p in decay.items():
        torch.testing.assert_close(p, before[name] * (1 - lr * weight_decay))
    for name, p in no_decay.items():
        assert torch.equal(p, before[name]), name


@pytest.mark.parametrize(
    ("module", "sizes"),
    [(nn.LayerNorm(4), [2]), (nn.Linear(4, 3), [1, 1]), (nn.Linear(4, 3, bias=False), [1])],
)
def test_empty_groups_are_left_out(module: nn.Module, sizes: list[int]) -> None:
    groups = param_groups(module, 0.1)
    assert [len(group["params"]) for group in groups] == sizes
    torch.optim.AdamW(groups)  # accepted as they are
