"""FID / IS / KID: known answers, the statistics cache, cross-rank gathering, and equality
with torch-fidelity on PNG folders through a random (Kaiming re-initialised) Inception."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg
from skimage import data

from vq.core.errors import UserError
from vq.core.testing import run_distributed
from vq.train.metrics import (
    FeatureAccumulator,
    FIDStatistics,
    InceptionFeatures,
    compute_fidelity,
    fid_statistics_path,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
)
from vq.train.metrics import fid as fid_module
from vq.train.metrics import inception as inception_module

# --------------------------------------------------------------------------------------------
# Formulas
# --------------------------------------------------------------------------------------------


def test_frechet_distance_of_diagonal_gaussians():
    # For diagonal covariances sqrtm(S1 S2) = diag(sqrt(a b)): FID = |dmu|^2 + sum (va - vb)^2
    # with va, vb the standard deviations.
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.1, 2.0, 5), rng.uniform(0.1, 2.0, 5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_equals_eigenvalue_form():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 8)), rng.normal(size=(60, 8)) @ rng.normal(size=(8, 8))
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    mu1, mu2 = x.mean(0), y.mean(0)
    # Tr sqrtm(S1 S2) = sum of the square roots of the (real, non-negative) eigenvalues.
    tr = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(0)).sum()
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fid_of_a_small_set_with_itself_is_zero():
    # 9 samples in 96 dimensions: rank-deficient covariances, as with a few images and
    # 2048-d Inception features; sqrtm of the singular product must still give ~0.
    features = torch.from_numpy(np.random.default_rng(3).gamma(2.0, 0.2, size=(9, 96)))
    stats = FIDStatistics.from_features(features)
    assert np.linalg.matrix_rank(stats.sigma) == 8
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the expected singularity must not surface as noise
        value = frechet_distance(stats.mu, stats.sigma, stats.mu, stats.sigma)
    assert abs(value) < 1e-6 * np.trace(stats.sigma)


def test_frechet_distance_falls_back_to_an_offset_when_sqrtm_fails(monkeypatch):
    calls = []
    real_sqrtm = linalg.sqrtm

    def flaky_sqrtm(matrix):
        calls.append(matrix)
        if len(calls) == 1:
            return np.full_like(matrix, np.nan)
        return real_sqrtm(matrix)

    monkeypatch.setattr(fid_module.linalg, "sqrtm", flaky_sqrtm)
    a, b = np.array([1.0, 0.0, 4.0]), np.array([1.0, 2.0, 0.0])  # both singular
    eps = 1e-6
    value = frechet_distance(np.zeros(3), np.diag(a), np.zeros(3), np.diag(b), eps=eps)
    assert isinstance(value, float)  # the reference returned a tuple here
    assert len(calls) == 2
    assert np.allclose(calls[1], np.diag((a + eps) * (b + eps)))
    expected = a.sum() + b.sum() - 2 * np.sqrt((a + eps) * (b + eps)).sum()
    assert value == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_rejects_a_large_imaginary_part(monkeypatch):
    monkeypatch.setattr(fid_module.linalg, "sqrtm", lambda m: m + 0.1j * np.eye(len(m)))
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))


def test_inception_score_known_answers():
    # Confident predictions spread evenly over k classes give IS = k; identical ones give 1.
    confident = torch.full((6, 10), -50.0)
    confident[torch.arange(6), torch.tensor([0, 1, 2, 0, 1, 2])] = 50.0
    mean, std = inception_score(confident, splits=1)
    assert mean == pytest.approx(3.0, rel=1e-9)
    assert std == 0.0
    assert inception_score(torch.zeros(6, 10), splits=2) == pytest.approx((1.0, 0.0))
    with pytest.raises(ValueError, match="splits"):
        inception_score(confident, splits=10)


def test_kid_equals_brute_force_unbiased_mmd():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(7, 4)), rng.normal(0.5, 1.0, size=(9, 4))

    def k(a, b):
        return (a @ b / 4 + 1) ** 3

    # subset_size caps to 7: every subset of x is all of x; y's subsets are random, so
    # compare one subset drawn with the same generator as the implementation.
    rs = np.random.RandomState(5)
    xs, ys = x[rs.choice(7, 7, replace=False)], y[rs.choice(9, 7, replace=False)]
    m = 7
    xx = sum(k(xs[i], xs[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(ys[i], ys[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(xs[i], ys[j]) for i in range(m) for j in range(m))
    expected = (xx + yy) / (m * (m - 1)) - 2 * xy / m**2
    mean, std = kernel_inception_distance(
        torch.from_numpy(x), torch.from_numpy(y), subsets=1, seed=5
    )
    assert mean == pytest.approx(expected, rel=1e-10)
    assert std == 0.0


# --------------------------------------------------------------------------------------------
# Statistics cache
# --------------------------------------------------------------------------------------------


def test_statistics_round_trip_without_pickles(tmp_path):
    features = torch.randn(12, 6)
    stats = FIDStatistics.from_features(
        features, dataset="toy", split="val", preprocessing="resize 32", feature_extractor="x"
    )
    assert stats.metadata["image_count"] == 12
    np.testing.assert_allclose(stats.sigma, np.cov(features.double().numpy(), rowvar=False))
    path = stats.save(fid_statistics_path("toy_val", root=tmp_path))
    assert path == tmp_path / "toy_val.npz"
    assert not list(tmp_path.glob(".*tmp*"))
    with np.load(path, allow_pickle=False) as raw:  # readable without unpickling anything
        assert set(raw.files) == {"mu", "sigma", "metadata"}
    loaded = FIDStatistics.load(path, expect={"dataset": "toy", "image_count": 12})
    assert np.array_equal(loaded.mu, stats.mu) and np.array_equal(loaded.sigma, stats.sigma)
    assert loaded.metadata == stats.metadata
    with pytest.raises(UserError, match="preprocessing='resize 32'"):
        FIDStatistics.load(path, expect={"preprocessing": "resize 256"})
    with pytest.raises(UserError, match="missing.npz"):
        FIDStatistics.load(tmp_path / "missing.npz")


def test_compute_fidelity_against_cached_statistics_leaves_out_kid(tmp_path):
    rng = torch.Generator().manual_seed(0)
    fake = {
        "features": torch.randn(20, 5, generator=rng),
        "logits": torch.randn(20, 7, generator=rng),
    }
    real = {"features": torch.randn(30, 5, generator=rng) + 0.3}
    cached = FIDStatistics.load(
        FIDStatistics.from_features(real["features"]).save(tmp_path / "r.npz")
    )
    from_rows = compute_fidelity(fake, real, reference_name="r", kid_subset_size=20, isc_splits=5)
    from_cache = compute_fidelity(fake, cached, reference_name="r", isc_splits=5)
    assert set(from_rows) == {"fid", "isc_mean", "isc_std", "kid_mean", "kid_std", "reference"}
    assert set(from_cache) == {"fid", "isc_mean", "isc_std", "reference"}
    assert from_cache["fid"] == pytest.approx(from_rows["fid"], rel=1e-12)
    assert from_rows["fid"] > 0.1 and from_rows["reference"] == "r"


# --------------------------------------------------------------------------------------------
# Gathering across ranks
# --------------------------------------------------------------------------------------------


def test_accumulator_orders_by_index_and_drops_duplicates():
    rows = torch.arange(10.0).unsqueeze(1) * torch.ones(1, 3)  # row i holds i
    acc = FeatureAccumulator(num_samples=10)
    order = torch.tensor([7, 2, 9, 0, 2, 5, 1, 3, 4, 6, 8, 7])  # 2 and 7 seen twice
    for chunk in order.split(5):
        acc.update({"f": rows[chunk]}, index=chunk)
    assert torch.equal(acc.gather()["f"], rows)
    with pytest.raises(ValueError, match="for every batch"):
        acc.update({"f": rows[:2]})


# --------------------------------------------------------------------------------------------
# Inception features against torch-fidelity
# --------------------------------------------------------------------------------------------

N_IMAGES = 9  # per folder; odd, so two ranks need a padding duplicate
ISC_SPLITS = 3  # divides N_IMAGES


def _load_folder(folder: Path) -> torch.Tensor:
    files = sorted(folder.glob("*.png"))  # torch-fidelity's order
    return torch.stack(
        [torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files]
    )


@pytest.fixture(scope="module")
def inception_setup(tmp_path_factory, random_inception):
    """Random weights, two folders of 32 px PNG crops (astronaut, chelsea) and our features."""
    root = tmp_path_factory.mktemp("fidelity")
    weights = random_inception
    rng = np.random.default_rng(0)
    folders = {}
    for name, photo in (("astronaut", data.astronaut()), ("chelsea", data.chelsea())):
        folder = folders[name] = root / name
        folder.mkdir()
        for i in range(N_IMAGES):
            top, left = rng.integers(0, photo.shape[0] - 96), rng.integers(0, photo.shape[1] - 96)
            crop = Image.fromarray(photo[top : top + 96, left : left + 96])
            crop.resize((32, 32), Image.BICUBIC).save(folder / f"{i:02d}.png")
    network = InceptionFeatures(weights)
    rows = {name: network(_load_folder(folder)) for name, folder in folders.items()}
    return weights, folders, rows


@pytest.fixture(scope="module")
def single_process_fidelity(inception_setup) -> dict[str, float | str]:
    """Astronaut crops against chelsea crops on one process (one 2048-d sqrtm, shared)."""
    _, _, rows = inception_setup
    return compute_fidelity(
        rows["astronaut"],
        rows["chelsea"],
        reference_name="chelsea",
        isc_splits=ISC_SPLITS,
        kid_subset_size=N_IMAGES,
    )


@pytest.mark.slow
def test_fidelity_equals_torch_fidelity(inception_setup, single_process_fidelity):
    import torch_fidelity

    weights, folders, _ = inception_setup
    ours = single_process_fidelity
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch_fidelity.calculate_metrics(
            input1=str(folders["astronaut"]),
            input2=str(folders["chelsea"]),
            cuda=False,
            fid=True,
            isc=True,
            kid=True,
            feature_extractor_weights_path=str(weights),
            isc_splits=ISC_SPLITS,
            kid_subset_size=N_IMAGES,
            save_cpu_ram=True,
            cache=False,
            verbose=False,
        )
    assert ours["fid"] > 1.0  # random weights still separate two different photos
    assert ours["isc_mean"] > 1.05
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-5)
    assert ours["isc_mean"] == pytest.approx(theirs["inception_score_mean"], rel=1e-5)
    assert ours["isc_std"] == pytest.approx(theirs["inception_score_std"], rel=1e-4, abs=1e-7)
    assert ours["kid_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)
    assert ours["reference"] == "chelsea"


def test_inception_weights_missing_or_wrong(tmp_path):
    with pytest.raises(UserError, match=r"nowhere\.pth.*pytorch-fid"):
        InceptionFeatures(tmp_path / "nowhere.pth")
    torch.save({"fc.weight": torch.zeros(1008, 2048)}, tmp_path / "partial.pth")
    with pytest.raises(UserError, match="not an Inception-v3 state dict: no Conv2d_1a_3x3"):
        InceptionFeatures(tmp_path / "partial.pth")
    imagenet_like = {key: torch.zeros(1) for key in inception_module._SENTINEL_KEYS}
    imagenet_like["fc.weight"] = torch.zeros(1000, 2048)
    torch.save(imagenet_like, tmp_path / "imagenet.pth")
    with pytest.raises(UserError, match=r"\(1000, 2048\) classifier"):
        InceptionFeatures(tmp_path / "imagenet.pth")


@pytest.mark.slow
def test_inception_weights_with_a_missing_layer(inception_setup, tmp_path):
    weights, _, _ = inception_setup
    state_dict = torch.load(weights, weights_only=True)
    del state_dict["Mixed_6b.branch7x7_2.conv.weight"]
    torch.save(state_dict, tmp_path / "broken.pth")
    with pytest.raises(UserError, match="does not fit Inception-v3.*Mixed_6b.branch7x7_2"):
        InceptionFeatures(tmp_path / "broken.pth")


def _inception_worker(weights: str, folder: str) -> dict[str, torch.Tensor]:
    """One rank: extract its shuffled-sampler share of the folder, gather without duplicates."""
    from torch.utils.data import DistributedSampler

    from vq.core.distributed import rank, world_size

    images = _load_folder(Path(folder))  # (N, 3, 32, 32)
    sampler = DistributedSampler(
        range(len(images)), num_replicas=world_size(), rank=rank(), shuffle=True, seed=1
    )
    indices = torch.tensor(list(sampler))
    network = InceptionFeatures(weights)
    accumulator = FeatureAccumulator(num_samples=len(images))
    for batch in indices.split(3):
        accumulator.update(network(images[batch]), index=batch)
    return accumulator.gather()


@pytest.mark.slow
@pytest.mark.distributed
def test_two_ranks_give_the_single_process_result(inception_setup, single_process_fidelity):
    weights, folders, rows = inception_setup
    results = run_distributed(_inception_worker, 2, str(weights), str(folders["astronaut"]))
    assert torch.equal(results[0]["features"], results[1]["features"])  # every rank has all
    gathered = results[0]
    assert gathered["features"].shape == (N_IMAGES, 2048)  # the padding duplicate is gone
    torch.testing.assert_close(
        gathered["features"], rows["astronaut"]["features"], rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(
        gathered["logits"], rows["astronaut"]["logits"], rtol=1e-4, atol=1e-4
    )
    # FID is a function of the gathered features just compared (and its 2048-d sqrtm is the
    # slowest step of these tests); IS and KID also depend on the row order, so check them.
    isc = inception_score(gathered["logits"], splits=ISC_SPLITS)
    kid = kernel_inception_distance(
        gathered["features"], rows["chelsea"]["features"], subset_size=N_IMAGES
    )
    assert isc[0] == pytest.approx(single_process_fidelity["isc_mean"], rel=1e-4)
    assert isc[1] == pytest.approx(single_process_fidelity["isc_std"], rel=1e-3, abs=1e-6)
    assert kid[0] == pytest.approx(single_process_fidelity["kid_mean"], rel=1e-4)


def test_low_rank_frechet_distance_equals_the_matrix_root_form() -> None:
    """Fewer samples than dimensions: the (N, N) eigenvalue form equals sqrtm of (D, D)."""
    from vq.train.metrics import frechet_distance_from_features

    g = torch.Generator().manual_seed(3)
    fake = torch.randn(12, 96, generator=g, dtype=torch.float64) * 1.5 + 0.3
    real = FIDStatistics.from_features(torch.randn(40, 96, generator=g, dtype=torch.float64))
    stats = FIDStatistics.from_features(fake)
    expected = frechet_distance(stats.mu, stats.sigma, real.mu, real.sigma)
    assert frechet_distance_from_features(fake, real.mu, real.sigma) == pytest.approx(
        expected, rel=1e-6
    )
    # N >= D falls back to the matrix root
    many = torch.randn(120, 96, generator=g, dtype=torch.float64)
    many_stats = FIDStatistics.from_features(many)
    assert frechet_distance_from_features(many, real.mu, real.sigma) == pytest.approx(
        frechet_distance(many_stats.mu, many_stats.sigma, real.mu, real.sigma), rel=1e-12
    )
