"""Sampling precision: ``sample --dtype`` / ``--tokenizer-dtype`` and bf16 weights in
``generate``. fp32 is what it always was; bf16 draws nearly the same greedy tokens as fp32
on a model that has learnt something (a random one is too close to uniform to say)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vq.core import amp
from vq.core.seeding import seeded_generator
from vq.generators import Llama, SequenceLayout, generate, next_token_loss
from vq.train.data import to_uint8
from vq.train.sample import sample_main
from vq.train.tokenizer_source import load_frozen_tokenizer
from vq.train.trainers.ar import build_network, sample_tokens

sys.path.insert(0, str(Path(__file__).parent))
from test_sample import Setup

NUM_CLASSES, CODEBOOK, GRID = 8, 16, (6, 6)


@pytest.fixture(scope="module")
def guided(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return Setup(tmp_path_factory.mktemp("dtype"), guidance=True)


def pattern_grids(classes: torch.Tensor) -> torch.Tensor:
    """(B, h, w) grids where cell t of class c holds (3c + 5t) mod CODEBOOK."""
    t = torch.arange(GRID[0] * GRID[1])
    return ((3 * classes[:, None] + 5 * t) % CODEBOOK).view(-1, *GRID)


def trained_llama() -> tuple[Llama, SequenceLayout]:
    """A tiny LLaMA trained until its greedy grids are the pattern (confident logits)."""
    torch.manual_seed(0)
    layout = SequenceLayout(NUM_CLASSES, CODEBOOK, null_class=False)
    classes = torch.arange(NUM_CLASSES)
    tokens = layout.sequence(classes, pattern_grids(classes))  # (8, 37)
    model = Llama.from_preset("tiny", vocab_size=NUM_CLASSES + CODEBOOK)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(200):
        loss = next_token_loss(model(tokens), tokens, layout)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    return model.eval(), layout


def test_bf16_weights_draw_the_greedy_tokens_of_fp32(one_thread: None) -> None:
    model, _ = trained_llama()
    classes = torch.arange(NUM_CLASSES).repeat(2)
    args = (classes, GRID, CODEBOOK, NUM_CLASSES)
    fp32 = generate(model, *args, guidance_scale=1.0, temperature=0.0)  # (16, 6, 6)
    assert torch.equal(fp32, pattern_grids(classes))  # the model is confident

    half = copy.deepcopy(model).to(torch.bfloat16)
    assert half.make_cache(1, 4).keys[0].dtype == torch.bfloat16  # the cache follows
    bf16 = generate(half, *args, guidance_scale=1.0, temperature=0.0)
    assert (bf16 == fp32).float().mean().item() > 0.95

    # the drawn distribution, not just the argmax: the same uniforms give nearly the same
    # tokens at temperature 1
    kw: dict = {"guidance_scale": 1.0, "temperature": 1.0}
    a = generate(model, *args, generator=torch.Generator().manual_seed(1), **kw)
    b = generate(half, *args, generator=torch.Generator().manual_seed(1), **kw)
    assert (a == b).float().mean().item() > 0.9


def test_sample_fp32_is_unchanged_and_bf16_decodes_in_bf16(guided: Setup) -> None:
    flags = ["--classes", "1", "2", "--per-class", "2", "--batch-size", "4", "--seed", "3"]
    assert sample_main(guided.argv("plain", *flags)) == 0
    assert sample_main(guided.argv("fp32", *flags, "--dtype", "fp32")) == 0
    images, labels = guided.npz("fp32")
    assert np.array_equal(images, guided.npz("plain")[0])

    # known answer: generate + decode in fp32, as before the flag existed
    tokenizer = load_frozen_tokenizer(guided.tokenizer_config, [guided.tokenizer_weights])
    network = build_network(guided.config, guided.space)
    network.load_state_dict(load_file(str(guided.weights)))
    classes, sampling = torch.tensor([1, 1, 2, 2]), guided.config.sampling
    tokens = sample_tokens(
        network, classes, guided.space, 9, sampling, seeded_generator("cpu", 3, 0)
    )
    expected = to_uint8(tokenizer.decode(tokens)).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(images, expected)

    half = ["--dtype", "bf16", "--tokenizer-dtype", "bf16"]
    assert sample_main(guided.argv("bf16", *flags, *half)) == 0
    low, low_labels = guided.npz("bf16")
    assert low.shape == images.shape and low_labels.tolist() == labels.tolist()
    # the tokenizer in bf16 decodes fp32's tokens to nearly the same pixels
    decoded = tokenizer.to(torch.bfloat16).decode(tokens).float()
    pixels = to_uint8(decoded).permute(0, 2, 3, 1).numpy().astype(int)
    assert np.abs(pixels - expected.astype(int)).mean() < 3.0


def test_sample_refuses_an_unknown_dtype(guided: Setup, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        sample_main(guided.argv("bad", "--dtype", "fp8"))
    assert exit_info.value.code == 2
    assert "invalid choice: 'fp8'" in capsys.readouterr().err
    assert not (guided.root / "work" / "bad").exists()


def test_sample_warns_of_each_dtype_this_cpu_has_no_kernels_for(
    guided: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a CPU with bf16 kernels but none for fp16 (no AVX512-FP16): the common case
    monkeypatch.setattr(amp, "cpu_has_kernels", lambda dtype: dtype != torch.float16)
    flags = ["--classes", "1", "--per-class", "1", "--batch-size", "1"]
    assert sample_main(guided.argv("fp16", *flags, "--dtype", "fp16", "--autocast")) == 0
    log = next((guided.root / "work" / "fp16" / "logs").glob("*.log")).read_text()
    assert "warning: --dtype: this CPU has no float16 kernels" in log
    assert log.count("warning") == 1  # not --tokenizer-dtype fp32, not bf16 --autocast
