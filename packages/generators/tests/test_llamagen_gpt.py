"""LlamaGen's class-to-image GPT, converted, against an independent reference forward pass.

The reference below re-states LlamaGen's ``Transformer`` (autoregressive/models/gpt.py) from
its description, operating directly on a state dict in LlamaGen's layout: separate class
and token embeddings, fused ``wqkv``, SwiGLU ``w1/w3/w2``, RMSNorm (eps 1e-5), and its 2D
rotary embedding as a complex multiplication of ADJACENT dimension pairs, with the all-zero
table at the class position and per-axis frequencies ``10000^(-4j/head_dim)`` (row first,
then column). Attention is written out as softmax(q k^T / sqrt(D) + causal mask) v. Random
weights of a tiny size (2 layers, width 64, 4 heads, 4x4 grid, 32 codes, 10 classes + null)
are saved as a LlamaGen checkpoint, converted, and our network must give the reference's
logits, and greedy KV-cached sampling its argmax decoding, with and without guidance.
"""

from __future__ import annotations

import copy
import json
import math

import pydantic
import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor

from vq.core.errors import UserError
from vq.generators import ProposalNetworkConfig, SequenceLayout, build_proposal_network, generate
from vq.generators.convert_llamagen import convert, convert_checkpoint
from vq.generators.rope import RotaryEmbedding

DEPTH, WIDTH, HEADS, GRID, CODES, CLASSES = 2, 64, 4, 4, 32, 10
HIDDEN = 256  # LlamaGen's SwiGLU width of 64: int(2 * 4 * 64 / 3) = 170, up to a multiple of 256


# ----------------------------------------------------------------- the reference -----------


def llamagen_state(
    depth: int = DEPTH,
    width: int = WIDTH,
    hidden: int = HIDDEN,
    codes: int = CODES,
    class_rows: int = CLASSES + 1,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Tensor]:
    """Random weights under LlamaGen's names (meta tensors for full sizes)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float, mean: float = 0.0) -> Tensor:
        if device == "meta":
            return torch.empty(shape, device="meta")
        return mean + scale * torch.randn(shape, generator=g)

    state = {
        "cls_embedding.embedding_table.weight": rand(class_rows, width, scale=1.0),
        "tok_embeddings.weight": rand(codes, width, scale=1.0),
        "norm.weight": rand(width, scale=0.1, mean=1.0),
        "output.weight": rand(codes, width, scale=0.3),
    }
    for i in range(depth):
        p = f"layers.{i}."
        state |= {
            p + "attention_norm.weight": rand(width, scale=0.1, mean=1.0),
            p + "attention.wqkv.weight": rand(3 * width, width, scale=0.2),
            p + "attention.wo.weight": rand(width, width, scale=0.1),
            p + "ffn_norm.weight": rand(width, scale=0.1, mean=1.0),
            p + "feed_forward.w1.weight": rand(hidden, width, scale=0.1),
            p + "feed_forward.w3.weight": rand(hidden, width, scale=0.1),
            p + "feed_forward.w2.weight": rand(width, hidden, scale=0.1),
        }
    return state


def reference_rotation(grid: int, head_dim: int) -> Tensor:
    """Complex factors (1 + grid^2, head_dim/2) of every position: 0 for the class token,
    then each cell in raster order, pairs [0, D/4) by the row, [D/4, D/2) by the column."""
    theta = 10000.0 ** (-4.0 * torch.arange(head_dim // 4, dtype=torch.float64) / head_dim)
    table = torch.zeros(1 + grid * grid, head_dim // 2, dtype=torch.complex128)
    for r in range(grid):
        for c in range(grid):
            angle = torch.cat((r * theta, c * theta))
            table[1 + r * grid + c] = torch.polar(torch.ones_like(angle), angle)
    return table.to(torch.complex64)


def rms(x: Tensor, weight: Tensor) -> Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * weight


def reference_logits(state: dict[str, Tensor], classes: Tensor, codes: Tensor) -> Tensor:
    """LlamaGen's logits (B, 1 + n, K) of ``[class] + codes`` (codes (B, n) in raster order)."""
    h = torch.cat(
        (
            state["cls_embedding.embedding_table.weight"][classes][:, None],
            state["tok_embeddings.weight"][codes],
        ),
        dim=1,
    )  # (B, T, C)
    B, T, C = h.shape
    D = C // HEADS
    rotation = reference_rotation(GRID, D)[:T]  # (T, D/2)
    mask = torch.full((T, T), float("-inf")).triu(1)
    for i in range(DEPTH):
        p = f"layers.{i}."
        x = rms(h, state[p + "attention_norm.weight"])
        q, k, v = (x @ state[p + "attention.wqkv.weight"].t()).split(C, dim=-1)
        q, k, v = (t.view(B, T, HEADS, D) for t in (q, k, v))
        q, k = (
            torch.view_as_real(
                torch.view_as_complex(t.reshape(B, T, HEADS, D // 2, 2)) * rotation[:, None]
            ).flatten(3)
            for t in (q, k)
        )  # adjacent pairs (2i, 2i + 1) rotated as complex numbers
        scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(D) + mask
        y = torch.einsum("bhts,bshd->bthd", scores.softmax(-1), v).reshape(B, T, C)
        h = h + y @ state[p + "attention.wo.weight"].t()
        x = rms(h, state[p + "ffn_norm.weight"])
        gate = torch.nn.functional.silu(x @ state[p + "feed_forward.w1.weight"].t())
        up = x @ state[p + "feed_forward.w3.weight"].t()
        h = h + (gate * up) @ state[p + "feed_forward.w2.weight"].t()
    return rms(h, state["norm.weight"]) @ state["output.weight"].t()


def reference_greedy(state: dict[str, Tensor], classes: Tensor, scale: float) -> Tensor:
    """Argmax decoding of GRID^2 codes, recomputing the whole prefix each step; guided by
    the class-embedding row CLASSES (LlamaGen's null class) when scale != 1."""
    codes = torch.zeros(classes.shape[0], 0, dtype=torch.long)
    null = torch.full_like(classes, CLASSES)
    for _ in range(GRID * GRID):
        logits = reference_logits(state, classes, codes)[:, -1]
        if scale != 1.0:
            uncond = reference_logits(state, null, codes)[:, -1]
            logits = uncond + scale * (logits - uncond)
        codes = torch.cat((codes, logits.argmax(-1, keepdim=True)), dim=1)
    return codes.view(-1, GRID, GRID)


# ----------------------------------------------------------------- helpers -----------------


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory):
    """(LlamaGen state, conversion, our network with the converted weights)."""
    root = tmp_path_factory.mktemp("llamagen_gpt")
    state = llamagen_state()
    torch.save({"model": state, "steps": 7}, root / "c2i_tiny.pt")
    conversion = convert_checkpoint(
        root / "c2i_tiny.pt", root / "out", {"heads": HEADS, "num_classes": CLASSES}
    )
    network = build_proposal_network(conversion.network(GRID), CODES, CLASSES)
    network.load_state_dict(load_file(str(root / "out" / "model.safetensors")))
    return state, conversion, network.eval(), root


def layout() -> SequenceLayout:
    return SequenceLayout(CLASSES, CODES, null_class=True)


# ----------------------------------------------------------------- tests -------------------


def test_teacher_forced_logits_equal_the_reference(converted) -> None:
    state, _, network, _ = converted
    g = torch.Generator().manual_seed(1)
    classes = torch.tensor([0, 3, 9, CLASSES])  # the null class too
    codes = torch.randint(0, CODES, (4, GRID, GRID), generator=g)
    with torch.no_grad():
        ours = layout().image_logits(network(layout().sequence(classes, codes)))  # (4, 17, K)
        ref = reference_logits(state, classes, codes.flatten(1))
    assert ref.std() > 0.5  # the comparison is not between near-constant logits
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_cached_greedy_sampling_gives_the_reference_tokens(converted, scale: float) -> None:
    state, _, network, _ = converted
    classes = torch.tensor([1, 4, 7])
    ours = generate(
        network, classes, (GRID, GRID), CODES, CLASSES, guidance_scale=scale, temperature=0.0
    )
    assert torch.equal(ours, reference_greedy(state, classes, scale))


def test_guidance_mixes_in_the_null_class_row(converted) -> None:
    state, conversion, network, _ = converted
    embed = network.embed_tokens.weight
    assert torch.equal(embed[CLASSES], state["cls_embedding.embedding_table.weight"][CLASSES])
    assert torch.equal(embed[CLASSES + 1 :], state["tok_embeddings.weight"])
    assert conversion.null_class and layout().null_id == CLASSES
    classes = torch.tensor([1, 4, 7])

    def draw(model, scale: float) -> Tensor:
        return generate(
            model, classes, (GRID, GRID), CODES, CLASSES, guidance_scale=scale, temperature=0.0
        )

    plain, guided = draw(network, 1.0), draw(network, 3.0)
    assert not torch.equal(plain, guided)  # guidance changes the tokens: the test above bites
    other = copy.deepcopy(network)
    with torch.no_grad():  # another null row: only the guided tokens may change
        other.embed_tokens.weight[CLASSES] = torch.randn(WIDTH)
    assert torch.equal(draw(other, 1.0), plain) and not torch.equal(draw(other, 3.0), guided)


def test_output_directory_and_derived_buffers(converted, tmp_path) -> None:
    _, conversion, _, root = converted
    config = json.loads((root / "out" / "config.json").read_text())
    assert (config["format"], config["size"], config["num_classes"]) == (
        "vq-generator",
        "custom",
        10,
    )
    assert config["llama"]["heads"] == HEADS and config["codebook_size"] == CODES
    assert conversion.dropped == []
    state = {f"module.{k}": v for k, v in llamagen_state().items()}  # a DDP prefix
    state["module.freqs_cis"] = torch.zeros(17, 8, 2)  # older exports kept these buffers
    state["module.layers.0.attention.kv_cache.k_cache"] = torch.zeros(1)
    again = convert(state, source="x.pt", heads=HEADS, num_classes=CLASSES)
    assert again.dropped == ["freqs_cis", "layers.0.attention.kv_cache.k_cache"]
    assert again.state.keys() == conversion.state.keys()


def test_the_class_position_is_rotated_to_zero() -> None:
    rope = RotaryEmbedding(16, 17, 10000.0, grid_width=4)
    q = torch.randn(1, 1, 17, 16)
    rq, _ = rope(q, q, 0)
    assert torch.count_nonzero(rq[:, :, 0]) == 0
    torch.testing.assert_close(rq[:, :, 1], q[:, :, 1])  # cell (0, 0): angle 0, identity
    # cell (1, 0) (position 5) turns only the row pairs, cell (0, 1) only the column pairs
    assert torch.equal(rq[..., 5, 4:8], q[..., 5, 4:8]) and not torch.equal(
        rq[..., 5, :4], q[..., 5, :4]
    )
    assert torch.equal(rq[..., 2, :4], q[..., 2, :4]) and not torch.equal(
        rq[..., 2, 4:8], q[..., 2, 4:8]
    )


def test_without_the_null_class_row_the_vocabulary_has_none() -> None:
    state = llamagen_state(class_rows=CLASSES)
    conversion = convert(state, source="x.pt", heads=HEADS, num_classes=CLASSES)
    assert not conversion.null_class and conversion.network(GRID).label_dropout == 0.0
    assert conversion.state["embed_tokens.weight"].shape == (CLASSES + CODES, WIDTH)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("layers.1.ffn_norm.weight"), "lacks layers.1.ffn_norm.weight"),
        (lambda s: s.update({"layers.0.attention.wq.weight": torch.zeros(1)}), "not part of"),
        (lambda s: s.update({"norm.weight": torch.zeros(3)}), r"norm.weight \(3,\)"),
        (
            lambda s: s.update({"layers.0.attention.wqkv.weight": torch.zeros(96, 64)}),
            "grouped-query",
        ),
        (lambda s: s.pop("tok_embeddings.weight"), "expected a tensor 'tok_embeddings.weight'"),
        (
            lambda s: s.update({"cls_embedding.cap_proj.fc1.weight": torch.zeros(1)}),
            "text-to-image",
        ),
        (lambda s: s.update({"layers.3.ffn_norm.weight": torch.zeros(64)}), "numbered 0..L-1"),
    ],
)
def test_layout_problems_are_user_errors(change, message: str) -> None:
    state = llamagen_state()
    change(state)
    with pytest.raises(UserError, match=message):
        convert(state, source="x.pt", heads=HEADS, num_classes=CLASSES)


def test_unknown_sizes_and_class_counts_need_options() -> None:
    with pytest.raises(UserError, match="pass --options heads:N"):
        convert(llamagen_state(), source="x.pt", num_classes=CLASSES)
    with pytest.raises(UserError, match="11 rows; 1000 classes"):
        convert(llamagen_state(), source="x.pt", heads=HEADS)
    with pytest.raises(UserError, match="no 'ema'"):
        convert({"model": llamagen_state()}, source="x.pt", heads=HEADS, weights="ema")


@pytest.mark.slow  # the first elementwise op on the meta device registers kernels (~6 s)
@pytest.mark.parametrize(
    ("size", "depth", "width", "heads", "params"),
    [("B", 12, 768, 12, 111e6), ("L", 24, 1024, 16, 343e6), ("XL", 36, 1280, 20, 775e6)],
)
def test_released_sizes_are_detected_from_shapes(size, depth, width, heads, params) -> None:
    hidden = 256 * math.ceil(int(8 * width / 3) / 256)
    state = llamagen_state(depth, width, hidden, codes=16384, class_rows=1001, device="meta")
    assert sum(v.numel() for v in state.values()) == pytest.approx(params, rel=0.02)
    conversion = convert(state, source=f"c2i_{size}_256.pt")
    assert conversion.size == size
    assert (conversion.llama.depth, conversion.llama.width, conversion.llama.heads) == (
        depth,
        width,
        heads,
    )
    network = conversion.network(16)
    assert (network.preset, network.overrides) == (size, {"rope": "2d", "grid_width": 16})
    with torch.device("meta"):
        ours = build_proposal_network(network, codebook_size=16384, num_classes=1000)
    expected = {k: v.shape for k, v in ours.state_dict().items()}
    assert {k: v.shape for k, v in conversion.state.items()} == expected
    assert expected["lm_head.weight"] == (17385, width)


def test_cached_chunks_match_the_full_forward_with_2d_rope(converted) -> None:
    _, _, network, _ = converted
    tokens = layout().sequence(torch.tensor([2, 5]), torch.randint(0, CODES, (2, GRID, GRID)))
    with torch.no_grad():
        full = network(tokens)  # (2, 17, V)
        cache = network.make_cache(batch_size=2, max_len=17)
        pieces = [network(tokens[:, :5], cache, 0), network(tokens[:, 5:9], cache, 5)]
        pieces += [network(tokens[:, t : t + 1], cache, t) for t in range(9, 17)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rope": "3d"}, "rope must be '1d' or '2d'"),
        ({"rope": "2d"}, "needs grid_width"),
        ({"rope": "2d", "grid_width": 4, "width": 24}, "divisible by 4"),  # head_dim 6
        ({"depth": "2"}, "need numbers"),
    ],
)
def test_rope_overrides_are_checked_with_the_config(overrides: dict, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        ProposalNetworkConfig(preset="tiny", overrides=overrides)
