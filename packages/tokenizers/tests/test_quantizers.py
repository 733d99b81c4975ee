"""Vector quantizers: search, known answers, losses, gradients, k-means, EMA, CVQ, statistics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vq.core.config import Config
from vq.tokenizers.quantizers import (
    CodebookHistogram,
    CVQConfig,
    FSQConfig,
    QuantizerConfig,
    VectorQuantizer,
    VectorQuantizerConfig,
    build_quantizer,
    codebook_statistics,
    kmeans,
    nearest_codes,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: a second intra-op thread only adds synchronisation latency."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def as_map(rows: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (1, D, 1, N): a feature map whose positions are the given rows."""
    return rows.t().reshape(1, rows.shape[1], 1, rows.shape[0]).clone()


def quantizer_with(codebook: list[list[float]], **cfg) -> VectorQuantizer:
    weights = torch.tensor(codebook)
    q = VectorQuantizer(VectorQuantizerConfig(num_codes=len(codebook), dim=weights.shape[1], **cfg))
    with torch.no_grad():
        q.codebook.copy_(weights)
    return q


# --- nearest-code search -------------------------------------------------------------------


@pytest.mark.parametrize("chunk_rows", [7, 64, 300, 1000])
def test_l2_search_equals_cdist_argmin(chunk_rows: int) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 8, generator=g, dtype=torch.float64)
    codebook = torch.randn(50, 8, generator=g, dtype=torch.float64)
    found = nearest_codes(x, codebook, "l2", chunk_rows, with_code_rows=True)
    d = torch.cdist(x, codebook)  # (N, K)
    assert torch.equal(found.indices, d.argmin(1))
    torch.testing.assert_close(found.distances, d.min(1).values.pow(2))
    assert torch.equal(found.code_rows, d.argmin(0))
    torch.testing.assert_close(found.code_distances, d.min(0).values.pow(2))


@pytest.mark.parametrize("chunk_rows", [13, 300])
def test_cosine_search_equals_brute_force(chunk_rows: int) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 8, generator=g, dtype=torch.float64)
    codebook = torch.randn(50, 8, generator=g, dtype=torch.float64) * 3
    found = nearest_codes(x, codebook, "cosine", chunk_rows, with_code_rows=True)
    d = 1 - F.cosine_similarity(x[:, None], codebook[None], dim=-1)  # (N, K)
    assert torch.equal(found.indices, d.argmin(1))
    torch.testing.assert_close(found.distances, d.min(1).values)
    assert torch.equal(found.code_rows, d.argmin(0))


def test_search_in_fp32_picks_the_closest_code() -> None:
    # fp32 matmul distances may flip exact near-ties; the chosen code must still be (one of)
    # the closest.
    g = torch.Generator().manual_seed(2)
    x, codebook = torch.randn(500, 16, generator=g), torch.randn(256, 16, generator=g)
    found = nearest_codes(x, codebook, "l2", 37)
    exact = torch.cdist(x.double(), codebook.double()).pow(2)
    chosen = exact.gather(1, found.indices[:, None]).squeeze(1)
    torch.testing.assert_close(chosen, exact.min(1).values, atol=1e-4, rtol=1e-5)


def test_search_ties_go_to_the_lowest_index() -> None:
    codebook = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    found = nearest_codes(torch.tensor([[2.0, 0.0]]), codebook, "l2", with_code_rows=True)
    assert found.indices.tolist() == [0]


def test_search_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        nearest_codes(torch.zeros(3, 4), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="distance"):
        nearest_codes(torch.zeros(3, 4), torch.zeros(5, 4), "manhattan")  # type: ignore[arg-type]


def test_indices_under_bf16_autocast_equal_fp32() -> None:
    # Many close codes: bf16 distances would choose differently for a good part of the rows.
    g = torch.Generator().manual_seed(3)
    q = VectorQuantizer(VectorQuantizerConfig(num_codes=512, dim=32, search_chunk_rows=100))
    with torch.no_grad():
        q.codebook.copy_(torch.randn(512, 32, generator=g) * 0.1 + 1.0)
    z = torch.randn(2, 32, 8, 8, generator=g) * 0.1 + 1.0
    q.eval()
    reference = q(z).indices
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(q(z).indices, reference)
        assert torch.equal(q.indices(z), reference)
        # The same search done naively under autocast (bf16 matmul) does not agree, so the
        # assertions above can fail.
        x = z.permute(0, 2, 3, 1).reshape(-1, 32)
        naive = (q.codebook.pow(2).sum(1) - 2 * x @ q.codebook.t()).argmin(1)
    assert not torch.equal(naive.reshape(reference.shape), reference)


# --- known answers ---------------------------------------------------------------------------


def test_l2_known_answer_and_losses() -> None:
    q = quantizer_with([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    rows = torch.tensor([[0.1, 0.2], [0.9, -0.1], [0.2, 1.5], [0.6, 0.0]])
    out = q(as_map(rows))
    assert out.indices.tolist() == [[[0, 1, 2, 1]]]
    expected_codes = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    torch.testing.assert_close(out.quantized, as_map(expected_codes))
    # squared errors per row: 0.05, 0.02, 0.29, 0.16 -> mean over 4 x 2 entries = 0.065
    torch.testing.assert_close(out.losses["codebook"], torch.tensor(0.065))
    torch.testing.assert_close(out.losses["commitment"], torch.tensor(0.25 * 0.065))
    torch.testing.assert_close(out.loss(), torch.tensor(1.25 * 0.065))
    torch.testing.assert_close(q.codes(out.indices), as_map(expected_codes))
    assert torch.equal(q.indices(as_map(rows)), out.indices)


def test_cosine_known_answer_keeps_raw_codes() -> None:
    # Cluster: cosine search, but codes (and the codebook loss) live in the raw feature space.
    q = quantizer_with(
        [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]],
        distance="cosine",
        codebook_weight=1.0,
        commitment_weight=0.0,
    )
    rows = torch.tensor([[3.0, 1.0], [0.1, 5.0], [-2.0, -1.5], [-1.0, 0.2]])
    out = q(as_map(rows))
    assert out.indices.tolist() == [[[0, 1, 2, 2]]]
    codes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0], [-1.0, -1.0]])
    torch.testing.assert_close(out.quantized, as_map(codes))
    assert set(out.losses) == {"codebook"}
    torch.testing.assert_close(out.losses["codebook"], (codes - rows).pow(2).mean())


def test_normalized_known_answer() -> None:
    # Normalised codes [1, 0], [0, 1]; the input (3, 4) becomes (0.6, 0.8) -> code 1.
    q = quantizer_with(
        [[2.0, 0.0], [0.0, 3.0]],
        distance="cosine",
        normalize=True,
        commitment="normalized_mse",
        commitment_weight=1.0,
        codebook_weight=0.0,
    )
    out = q(as_map(torch.tensor([[3.0, 4.0], [5.0, -1.0]])))
    assert out.indices.tolist() == [[[1, 0]]]
    torch.testing.assert_close(out.quantized, as_map(torch.tensor([[0.0, 1.0], [1.0, 0.0]])))
    # (0.6-0)^2 + (0.8-1)^2 = 0.4 and |(5, -1)/sqrt(26) - (1, 0)|^2 = 2 - 10/sqrt(26)
    expected = (0.4 + 2 - 10 / math.sqrt(26)) / 4
    torch.testing.assert_close(out.losses["commitment"], torch.tensor(expected))
    torch.testing.assert_close(q.codes(out.indices), out.quantized)


def test_straight_through_and_loss_gradients() -> None:
    q = quantizer_with([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    rows = torch.tensor([[0.1, 0.2], [0.9, -0.1], [0.2, 1.5], [0.6, 0.0]])
    z = as_map(rows).requires_grad_()
    out = q(z)
    weights = torch.randn_like(out.quantized)
    (out.quantized * weights).sum().backward()
    torch.testing.assert_close(z.grad, weights)  # identity through the STE

    z.grad = None
    out = q(z)
    out.loss().backward()
    codes = as_map(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 0.0]]))
    torch.testing.assert_close(z.grad, 0.25 * 2 * (z.detach() - codes) / 8)
    # codebook loss: d/de_k = 2 * sum over members (e_k - x) / (N * D)
    expected = torch.zeros(3, 2)
    expected.index_add_(0, torch.tensor([0, 1, 2, 1]), 2 * (codes - z.detach())[0, :, 0].t() / 8)
    torch.testing.assert_close(q.codebook.grad, expected)


def test_gradient_flows_through_normalisation() -> None:
    q = quantizer_with([[1.0, 0.0], [0.0, 1.0]], normalize=True, distance="cosine")
    z = torch.randn(2, 2, 3, 3, requires_grad=True)
    weights = torch.randn(2, 2, 3, 3)
    (q(z).quantized * weights).sum().backward()
    z2 = z.detach().clone().requires_grad_()
    (F.normalize(z2, dim=1) * weights).sum().backward()
    torch.testing.assert_close(z.grad, z2.grad)


def test_output_dtype_follows_input() -> None:
    q = VectorQuantizer(VectorQuantizerConfig(num_codes=8, dim=4))
    out = q(torch.randn(1, 4, 2, 2, dtype=torch.bfloat16))
    assert out.quantized.dtype == torch.bfloat16
    assert out.indices.dtype == torch.int64
    assert out.losses["codebook"].dtype == torch.float32


# --- configs ---------------------------------------------------------------------------------


def test_config_union_and_presets() -> None:
    class Holder(Config):
        quantizer: QuantizerConfig

    vq = Holder.model_validate({"quantizer": {"kind": "vector", "num_codes": 16, "dim": 4}})
    fsq = Holder.model_validate({"quantizer": {"kind": "fsq", "levels": [8, 5]}})
    assert isinstance(build_quantizer(vq.quantizer), VectorQuantizer)
    assert build_quantizer(fsq.quantizer).num_codes == 40
    with pytest.raises(ValueError, match="codebook_weight"):
        VectorQuantizerConfig(update="ema", codebook_weight=1.0)
    with pytest.raises(ValueError, match="extra"):
        VectorQuantizerConfig(num_code=3)  # type: ignore[call-arg]
    vqkd = VectorQuantizerConfig.preset("vqkd", 8192, 32)
    assert (vqkd.distance, vqkd.normalize, vqkd.init, vqkd.update) == (
        "cosine",
        True,
        "kmeans",
        "ema",
    )
    assert vqkd.resolved_codebook_weight == 0.0
    cluster = VectorQuantizerConfig.preset("cluster", 8192, 768)
    assert cluster.cvq is not None
    assert cluster.cvq.sync
    assert cluster.commitment_weight == 0.0
    assert isinstance(FSQConfig.for_codebook_size(64000), FSQConfig)


def test_codebooks_changed_in_place_are_declared_for_fsdp() -> None:
    def declared(name: str, **overrides: object) -> list[str]:
        q = VectorQuantizer(VectorQuantizerConfig.preset(name, 16, 4, **overrides))
        names = {id(p): n for n, p in q.named_parameters()}
        return [names[id(p)] for p in q.inplace_updated_parameters()]

    assert declared("cvqvae") == ["codebook"]  # revived in place
    assert declared("cluster") == ["codebook"]
    assert declared("vqgan", init="kmeans") == ["codebook"]  # set by k-means in a forward
    assert declared("vqgan") == []  # moved by its optimizer only: FSDP may shard it
    assert declared("vqkd") == []  # an EMA buffer: FSDP never shards buffers


def test_ema_codebook_is_a_buffer_without_gradient() -> None:
    q = VectorQuantizer(VectorQuantizerConfig.preset("vqkd", 16, 4))
    assert list(q.parameters()) == []
    assert {"codebook", "initialized"} <= set(q.state_dict())


# --- EMA -------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [False, True])
def test_ema_update_equals_direct_computation(normalize: bool) -> None:
    g = torch.Generator().manual_seed(4)
    cfg = VectorQuantizerConfig(
        num_codes=32, dim=4, update="ema", normalize=normalize, distance="l2", ema_decay=0.9
    )
    q = VectorQuantizer(cfg)
    codebook = torch.randn(32, 4, generator=g)
    with torch.no_grad():
        q.codebook.copy_(codebook)
    rows = torch.randn(20, 4, generator=g)  # 20 rows: some of the 32 codes get none

    x = F.normalize(rows, dim=1) if normalize else rows
    current = F.normalize(codebook, dim=1) if normalize else codebook
    assign = torch.cdist(x, current).argmin(1)
    expected = current.clone()
    for k in range(32):
        members = x[assign == k]
        if len(members):
            moved = 0.9 * current[k] + 0.1 * members.mean(0)
            expected[k] = F.normalize(moved, dim=0) if normalize else moved
    assert len(assign.unique()) < 32

    out = q(as_map(rows))
    assert torch.equal(out.indices.flatten(), assign)
    torch.testing.assert_close(q.codebook, expected)
    torch.testing.assert_close(out.quantized, as_map(expected[assign]))  # updated codebook

    q.eval()
    q(as_map(rows))
    torch.testing.assert_close(q.codebook, expected)  # no update outside training


# --- k-means ---------------------------------------------------------------------------------


def lloyd(x: torch.Tensor, seeds: torch.Tensor, iterations: int) -> torch.Tensor:
    """Textbook k-means, one code at a time."""
    centroids = x[seeds].clone()
    for _ in range(iterations):
        assign = torch.cdist(x, centroids).argmin(1)
        for k in range(len(centroids)):
            if (assign == k).any():
                centroids[k] = x[assign == k].mean(0)
    return centroids


def test_kmeans_equals_textbook_lloyd() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(200, 3, generator=g, dtype=torch.float64)
    seeds = torch.randperm(200, generator=torch.Generator().manual_seed(9))[:12]
    result = kmeans(x, 12, 6, chunk_rows=17, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(result, lloyd(x, seeds, 6))


def test_kmeans_finds_separated_clusters_and_keeps_empty_codes() -> None:
    g = torch.Generator().manual_seed(6)
    centers = torch.tensor([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])
    x = (centers[:, None] + 0.1 * torch.randn(3, 50, 2, generator=g)).reshape(-1, 2)
    result = kmeans(x, 3, 10, generator=torch.Generator().manual_seed(0))
    # k-means from 3 seeds may merge clusters; from these seeds it must separate them.
    found = sorted(map(tuple, result.round().tolist()))
    assert found == sorted(map(tuple, centers.tolist()))
    # Fewer points than codes: seeds repeat, and a duplicate code without members stays put.
    two = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    result = kmeans(two, 4, 3, generator=torch.Generator().manual_seed(0))
    assert all(any(torch.equal(c, p) for p in two) for c in result)


def test_lazy_kmeans_runs_once_in_training() -> None:
    cfg = VectorQuantizerConfig(
        num_codes=8, dim=4, init="kmeans", kmeans_iterations=3, normalize=True, distance="cosine"
    )
    q = VectorQuantizer(cfg)
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(7))
    q.eval()
    q(z)
    assert not bool(q.initialized)

    q.train()
    torch.manual_seed(0)
    q(z)
    torch.manual_seed(0)
    x = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, 4), dim=1)
    expected = kmeans(x, 8, 3, "cosine", normalize=True)
    assert bool(q.initialized)
    # In gradient mode the codebook is exactly the k-means result after the first forward.
    torch.testing.assert_close(q.codebook, expected)

    state = q.state_dict()
    restored = VectorQuantizer(cfg)
    restored.load_state_dict(state)
    restored(torch.randn(1, 4, 2, 2) * 100)  # a restored codebook is not re-initialised
    torch.testing.assert_close(restored.codebook, expected)


# --- CVQ -------------------------------------------------------------------------------------


def test_cvq_update_known_answer() -> None:
    g = torch.Generator().manual_seed(8)
    codebook = torch.randn(6, 3, generator=g)
    codebook[5] += 20  # far from every feature: dead
    q = quantizer_with(codebook.tolist(), cvq=CVQConfig(decay=0.9))
    rows = torch.randn(10, 3, generator=g)
    q(as_map(rows))

    d = torch.cdist(rows, codebook)  # (N, K)
    frequency = torch.bincount(d.argmin(1), minlength=6).float() / 10
    usage = 0.1 * frequency
    alpha = 1 - torch.exp(-usage * 6 * 10 / 0.1 - 1e-3)
    anchors = rows[d.argmin(0)]
    expected = alpha[:, None] * codebook + (1 - alpha[:, None]) * anchors
    torch.testing.assert_close(q.reviver.usage, usage)
    torch.testing.assert_close(q.codebook.detach(), expected)
    assert frequency[5] == 0
    # the dead code jumped (all but exp(-1e-3) ~ 0.1 % of the way) to its anchor
    assert torch.dist(q.codebook[5], anchors[5]) < 0.0011 * torch.dist(codebook[5], anchors[5])


def train_on_narrow_cluster(cvq: CVQConfig | None, seed: int) -> CodebookHistogram:
    """SGD on the codebook loss; features from one blob far from the tiny uniform init."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    q = VectorQuantizer(VectorQuantizerConfig(num_codes=32, dim=4, commitment_weight=0.0, cvq=cvq))
    center = torch.full((1, 4, 1, 1), 2.0)
    for _ in range(100):
        q.codebook.grad = None
        q(center + 0.5 * torch.randn(4, 4, 8, 8, generator=g)).loss().backward()
        with torch.no_grad():
            q.codebook -= 1.0 * q.codebook.grad
    q.eval()
    histogram = CodebookHistogram(32)
    with torch.no_grad():
        histogram.update(q(center + 0.5 * torch.randn(64, 4, 8, 8, generator=g)).indices)
    return histogram


@pytest.mark.parametrize("seed", [0, 1])
def test_cvq_revives_a_collapsed_codebook(seed: int) -> None:
    plain = train_on_narrow_cluster(None, seed)
    revived = train_on_narrow_cluster(CVQConfig(), seed)
    assert plain.usage() <= 0.15
    assert plain.perplexity() < 1.5
    assert revived.usage() >= 0.6
    assert revived.perplexity() >= 8.0


# --- statistics ------------------------------------------------------------------------------


def test_codebook_statistics_known_answer() -> None:
    stats = codebook_statistics(torch.tensor([[0, 0], [1, 2]]), 4)
    entropy = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    torch.testing.assert_close(stats["codebook_usage"], torch.tensor(0.75))
    torch.testing.assert_close(stats["codebook_entropy"], torch.tensor(entropy))
    torch.testing.assert_close(stats["codebook_perplexity"], torch.tensor(math.exp(entropy)))


def test_histogram_accumulates_batches() -> None:
    hist = CodebookHistogram(8)
    hist.update(torch.tensor([0, 1, 1]))
    hist.update(torch.tensor([[1, 7]]))
    assert hist.total == 5
    assert hist.usage() == 3 / 8
    whole = codebook_statistics(torch.tensor([0, 1, 1, 1, 7]), 8)
    assert math.isclose(hist.entropy(), float(whole["codebook_entropy"]), rel_tol=1e-6)
    assert math.isclose(hist.perplexity(), math.exp(hist.entropy()), rel_tol=1e-6)
    uniform = CodebookHistogram(4)
    uniform.update(torch.arange(4).repeat(3))
    assert math.isclose(uniform.perplexity(), 4.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        hist.update(torch.tensor([8]))
    hist.reset()
    assert hist.total == 0


def test_forward_reports_statistics() -> None:
    q = quantizer_with([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [9.0, 9.0]])
    out = q(as_map(torch.tensor([[0.1, 0.2], [0.9, -0.1], [0.2, 1.5], [0.6, 0.0]])))
    expected = codebook_statistics(torch.tensor([0, 1, 2, 1]), 4)
    assert out.statistics.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(out.statistics[key], value)
