"""A training forward of a quantizer reads nothing back to the host.

Before #17 the vector quantizer asked ``bool(self.initialized)`` on every training forward
(a device sync on a GPU) to decide whether the lazy k-means had run; it now mirrors the
flag on the host and refreshes it when a state dict is loaded. Only reads made from
Python are counted (``vq.core.hostreads``); C++ syncs such as CUDA ``bincount`` need a GPU
to observe and were replaced by scatters of a known size.
"""

from __future__ import annotations

import pytest
import torch

from vq.core.hostreads import count_host_reads
from vq.tokenizers.quantizers import FSQ, FSQConfig, Quantizer, VectorQuantizer, vector
from vq.tokenizers.quantizers import VectorQuantizerConfig as VQConfig


def features(seed: int, dim: int) -> torch.Tensor:
    return torch.randn(2, dim, 4, 4, generator=torch.Generator().manual_seed(seed))  # (B, D, h, w)


def training_step(q: Quantizer, seed: int) -> None:
    z = features(seed, q.dim).requires_grad_()
    out = q(z)
    (out.quantized.square().mean() + out.loss()).backward()


@pytest.mark.parametrize(
    "quantizer",
    [
        VQConfig.preset("vqgan", 16, 4),
        VQConfig.preset("cvqvae", 16, 4),
        VQConfig.preset("vqkd", 16, 4, kmeans_iterations=2),
        VQConfig.preset("cluster", 16, 4),
        FSQConfig(levels=[3, 5, 3]),
    ],
    ids=["vqgan", "cvqvae", "vqkd", "cluster", "fsq"],
)
def test_no_host_read_per_training_forward_after_initialisation(quantizer) -> None:
    q = VectorQuantizer(quantizer) if isinstance(quantizer, VQConfig) else FSQ(quantizer)
    q.train()
    training_step(q, 0)  # the first forward may run k-means
    with count_host_reads() as reads:
        for seed in range(1, 4):
            training_step(q, seed)
    assert len(reads) == 0, reads.sites()


def test_the_kmeans_flag_follows_loaded_state_dicts(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[int] = []
    kmeans = vector.distributed_kmeans

    def counted(*args, **kwargs):
        runs.append(1)
        return kmeans(*args, **kwargs)

    monkeypatch.setattr(vector, "distributed_kmeans", counted)
    cfg = VQConfig.preset("vqkd", 16, 4, kmeans_iterations=2)
    trained = VectorQuantizer(cfg).train()
    training_step(trained, 0)
    assert runs == [1] and bool(trained.initialized)

    resumed = VectorQuantizer(cfg).train()
    resumed.load_state_dict(trained.state_dict())  # initialised: no second k-means
    with count_host_reads() as reads:
        training_step(resumed, 1)
    assert runs == [1] and len(reads) == 0, reads.sites()
    training_step(trained, 1)  # the same step on both: the same EMA codebook, bit for bit
    assert torch.equal(resumed.codebook, trained.codebook)

    resumed.load_state_dict(VectorQuantizer(cfg).state_dict())  # a fresh state: k-means again
    training_step(resumed, 2)
    assert runs == [1, 1]
    resumed.reset_parameters()  # so does a reset
    training_step(resumed, 3)
    assert runs == [1, 1, 1]
    assert "initialized" in resumed.state_dict()  # still checkpointed, for old checkpoints
