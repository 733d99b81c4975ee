"""Filters, guidance, seeded sampling, cached == uncached, and an overfit-then-generate run."""

from __future__ import annotations

import math

import pytest
import torch

from vq.core.seeding import seeded_generator
from vq.generators.gpt2 import GPT2
from vq.generators.llama import Llama
from vq.generators.sampling import (
    generate,
    guidance_at,
    sample_from_logits,
    sampled_token_accuracy,
    top_k_filter,
    top_p_filter,
)
from vq.generators.sequence import SequenceLayout, next_token_loss

NUM_CLASSES, CODEBOOK = 4, 16
VOCAB = NUM_CLASSES + 1 + CODEBOOK  # with the null class


def kept(logits: torch.Tensor) -> list[list[int]]:
    return [torch.isfinite(row).nonzero().flatten().tolist() for row in logits]


def test_top_k_keeps_the_k_largest() -> None:
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.0, 0.5], [5.0, 4.0, 3.0, 2.0, 1.0]])
    assert kept(top_k_filter(logits, 2)) == [[1, 3], [0, 1]]
    assert kept(top_k_filter(logits, 1)) == [[1], [0]]
    assert top_k_filter(logits, None) is logits
    assert torch.equal(top_k_filter(logits, 2)[0, 1], logits[0, 1])  # survivors untouched


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])  # ranked: 1 (0.5), 3 (0.3), 2 (.15), 0
    logits = probs.log()
    assert kept(top_p_filter(logits, 0.75)) == [[1, 3]]  # 0.5 < 0.75 <= 0.8
    assert kept(top_p_filter(logits, 0.85)) == [[1, 2, 3]]  # 0.8 < 0.85 <= 0.95
    assert kept(top_p_filter(logits, 0.3)) == [[1]]  # the top token always stays
    assert kept(top_p_filter(logits, 0.99)) == [[0, 1, 2, 3]]


def test_top_k_then_top_p_renormalises_over_the_top_k() -> None:
    logits = torch.tensor([[0.05, 0.5, 0.15, 0.3]]).log()
    # Top-2 leaves 0.5/0.8 = 0.625 and 0.375: p = 0.6 keeps only the best token.
    assert kept(top_p_filter(top_k_filter(logits, 2), 0.6)) == [[1]]


def test_sampling_frequencies_follow_the_filtered_distribution() -> None:
    logits = torch.tensor([0.05, 0.5, 0.15, 0.3]).log().expand(40_000, 4)
    g = torch.Generator().manual_seed(0)
    ids = sample_from_logits(logits, top_k=3, generator=g)
    freq = torch.bincount(ids, minlength=4).float() / ids.numel()
    torch.testing.assert_close(freq, torch.tensor([0.0, 0.5, 0.15, 0.3]) / 0.95, atol=0.01, rtol=0)
    assert sample_from_logits(logits[:2], temperature=0.0).tolist() == [1, 1]


def test_guidance_schedule_and_interval() -> None:
    assert guidance_at(5, 16, 1.75) == 1.75
    assert guidance_at(0, 16, 3.0, schedule="linear") == 1.0
    assert guidance_at(15, 16, 3.0, schedule="linear") == 3.0
    assert guidance_at(3, 16, 2.0, interval=(0.25, 1.0)) == 1.0
    assert guidance_at(4, 16, 2.0, interval=(0.25, 1.0)) == 2.0


def random_model(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if arch == "llama":
        model = Llama.from_preset("tiny", vocab_size=VOCAB)
        torch.nn.init.normal_(model.lm_head.weight, std=0.5)  # spread-out logits
        return model
    return GPT2.from_preset("tiny", vocab_size=VOCAB)  # tied head: larger weights self-repeat


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("scale", [1.0, 1.75])
def test_cached_sampling_equals_uncached_recomputation(arch: str, scale: float) -> None:
    model = random_model(arch)
    classes = torch.tensor([0, 1, 2, 3, 1])

    def run(use_cache: bool, seed: int = 7) -> torch.Tensor:
        return generate(
            model,
            classes,
            (4, 4),
            CODEBOOK,
            NUM_CLASSES,
            guidance_scale=scale,
            top_k=12,
            top_p=0.95,
            generator=torch.Generator().manual_seed(seed),
            use_cache=use_cache,
        )

    cached = run(use_cache=True)
    assert cached.shape == (5, 4, 4)
    assert cached.min() >= 0 and cached.max() < CODEBOOK
    assert torch.equal(cached, run(use_cache=False))
    assert torch.equal(cached, run(use_cache=True))  # same seed, same tokens
    assert not torch.equal(cached, run(use_cache=True, seed=8))  # the seed matters
    assert len(torch.unique(cached)) > 4  # genuinely random, not collapsed


@pytest.mark.parametrize("scale", [1.0, 1.75])
def test_per_sample_generators_make_samples_independent_of_the_batch(scale: float) -> None:
    model = random_model("llama")
    classes = torch.tensor([0, 1, 2, 3, 1])

    def run(rows: list[int]) -> torch.Tensor:
        generators = [seeded_generator("cpu", 0, r) for r in rows]
        return generate(model, classes[rows], (4, 4), CODEBOOK, NUM_CLASSES, guidance_scale=scale,
                        top_k=12, generator=generators)  # fmt: skip

    together = run([0, 1, 2, 3, 4])
    assert torch.equal(together[:2], run([0, 1]))
    assert torch.equal(together[[4, 2]], run([4, 2]))
    assert not torch.equal(together[1], together[4])  # same class, own random numbers
    with pytest.raises(ValueError, match="2 generators for 5 samples"):
        generate(model, classes, (4, 4), CODEBOOK, NUM_CLASSES,
                 generator=[seeded_generator("cpu", 0, r) for r in range(2)])  # fmt: skip


def test_sampled_accuracy_draws_each_position_with_the_sampler() -> None:
    layout = SequenceLayout(num_classes=2, codebook_size=3, null_class=False)  # offset 2
    tokens = torch.tensor([[0, 2, 3, 4], [1, 4, 4, 2]])  # image tokens 0 1 2 and 2 2 0
    logits = torch.full((2, 4, 5), -1e4)
    logits[:, :-1, 2] = 1e4  # both rows certainly predict code 0 everywhere
    accuracy = sampled_token_accuracy(logits, tokens, layout, per_sample=True)
    torch.testing.assert_close(accuracy, torch.tensor([1 / 3, 1 / 3]))
    # top-1 sampling of noisy logits is their argmax; top-k 3 of 3 codes is a real draw
    noisy = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(0))
    top1 = sampled_token_accuracy(noisy, tokens, layout, top_k=1, per_sample=True)
    argmax = (layout.predictions(noisy).argmax(-1) == layout.targets(tokens)).float().mean(1)
    torch.testing.assert_close(top1, argmax)
    rows = [seeded_generator("cpu", 1, b) for b in range(2)]
    first = sampled_token_accuracy(noisy, tokens, layout, generator=rows, per_sample=True)
    alone = sampled_token_accuracy(
        noisy[1:], tokens[1:], layout, generator=[seeded_generator("cpu", 1, 1)]
    )
    assert first[1] == alone


def test_guidance_changes_the_samples_and_prompt_is_kept() -> None:
    model = random_model("llama")
    classes = torch.tensor([0, 1, 2, 3])
    prompt = torch.tensor([[1, 2, 3]] * 4)

    def run(scale: float) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return generate(model, classes, (4, 4), CODEBOOK, NUM_CLASSES, guidance_scale=scale,
                        generator=g, prompt=prompt)  # fmt: skip

    plain, guided = run(1.0), run(4.0)
    assert torch.equal(guided.flatten(1)[:, :3], prompt)
    assert not torch.equal(plain, guided)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_overfit_four_grids_then_generate_them(arch: str) -> None:
    torch.manual_seed(0)
    layout = SequenceLayout(NUM_CLASSES, CODEBOOK, null_class=True)
    classes = torch.arange(NUM_CLASSES)
    grids = torch.randint(0, CODEBOOK, (NUM_CLASSES, 4, 4))
    tokens = layout.sequence(classes, grids)  # (4, 17)
    if arch == "llama":
        model = Llama.from_preset("tiny", vocab_size=VOCAB)
    else:
        model = GPT2.from_preset("tiny", vocab_size=VOCAB, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = next_token_loss(model(tokens), tokens, layout)
        first = loss.item() if first is None else first
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert first == pytest.approx(math.log(CODEBOOK), rel=0.2)
    assert loss.item() < 0.02

    greedy = generate(model, classes, (4, 4), CODEBOOK, NUM_CLASSES, guidance_scale=1.0,
                      temperature=0.0)  # fmt: skip
    assert torch.equal(greedy, grids)
    cold = generate(model, classes, (4, 4), CODEBOOK, NUM_CLASSES, guidance_scale=1.0,
                    temperature=0.1, generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(cold, grids)
