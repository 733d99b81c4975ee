"""VQ-KD and Cluster tokenizers: shapes, parts that must fit, frozen parts, encode/codes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from vq.core.errors import UserError
from vq.tokenizers.models.cluster import ClusterConfig, ClusterTokenizer, to_uint8
from vq.tokenizers.models.vqkd import VQKDConfig, VQKDTokenizer
from vq.tokenizers.quantizers import VectorQuantizerConfig
from vq.tokenizers.teachers import TeacherConfig
from vq.tokenizers.vit import ViTConfig


def tiny_vqkd(feature_dim: int = 12, num_codes: int = 16) -> VQKDTokenizer:
    encoder = ViTConfig.preset("tiny")  # 32 px -> 4x4 tokens of 8 dims
    decoder = ViTConfig(
        grid_size=4, patch_size=1, in_chans=8, embed_dim=16, depth=1, num_heads=2,
        out_dim=feature_dim,
    )  # fmt: skip
    torch.manual_seed(0)
    return VQKDTokenizer(
        VQKDConfig(
            encoder=encoder,
            quantizer=VectorQuantizerConfig.preset("vqkd", num_codes, 8),
            decoder=decoder,
        )
    )


def test_reference_vqkd_sizes() -> None:
    config = VQKDConfig.preset(feature_dim=768, num_codes=16384)
    assert (config.encoder.depth, config.encoder.embed_dim, config.encoder.out_dim) == (12, 768, 32)
    assert (config.decoder.depth, config.decoder.in_chans, config.decoder.out_dim) == (1, 32, 768)
    q = config.quantizer
    assert (q.num_codes, q.dim, q.distance, q.normalize) == (16384, 32, "cosine", True)
    assert (q.init, q.update, q.commitment, q.commitment_weight) == (
        "kmeans",
        "ema",
        "normalized_mse",
        1.0,
    )
    assert VQKDConfig().feature_dim == 512  # CLIP's projected width


def test_vqkd_parts_must_fit() -> None:
    good = VQKDConfig.preset(feature_dim=64)
    with pytest.raises(ValidationError, match="channels do not fit"):
        VQKDConfig(encoder=good.encoder, quantizer=good.quantizer.model_copy(update={"dim": 16}),
                   decoder=good.decoder)  # fmt: skip
    with pytest.raises(ValidationError, match="learns by EMA"):
        VQKDConfig(
            encoder=good.encoder,
            quantizer=VectorQuantizerConfig.preset("vqgan", 8192, 32),
            decoder=good.decoder,
        )
    with pytest.raises(ValidationError, match="grid_size"):
        VQKDConfig(
            encoder=good.encoder,
            quantizer=good.quantizer,
            decoder=good.decoder.model_copy(update={"grid_size": 16}),
        )


def test_vqkd_forward_encode_and_codes_agree() -> None:
    model = tiny_vqkd()
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    out = model(image)  # training mode: k-means init on this batch
    assert out.prediction.shape == (2, 12, 4, 4)
    assert out.indices.shape == (2, 4, 4) and out.indices.dtype == torch.int64
    assert set(out.quantizer.losses) == {"commitment"}
    assert bool(model.quantizer.initialized)
    # The codebook is no parameter: the optimizer never sees it.
    assert all("codebook" not in name for name, _ in model.named_parameters())
    model.eval()
    ids = model.encode(image)
    torch.testing.assert_close(model(image).indices, ids)
    codes = model.codes(ids)  # (B, 8, h, w), unit vectors
    torch.testing.assert_close(codes.norm(dim=1), torch.ones(2, 4, 4))
    torch.testing.assert_close(model.predict_features(ids), model(image).prediction)
    assert model.grid_size(224 // 8 * 8) == (28, 28) and model.num_codes == 16
    with pytest.raises(UserError, match="multiple of the VQ-KD patch size 8"):
        model.grid_size((30, 32))


def test_encode_changes_no_state() -> None:
    model = tiny_vqkd()
    model(torch.rand(2, 3, 32, 32) * 2 - 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.encode(torch.rand(2, 3, 32, 32) * 2 - 1)  # still in training mode
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_to_uint8_inverts_the_dataset_scaling_exactly() -> None:
    original = torch.arange(256, dtype=torch.uint8).repeat(3, 1).view(1, 3, 16, 16)
    image = original.float() / 127.5 - 1.0  # what datasets store as "image"
    assert torch.equal(to_uint8(image), original)
    assert torch.equal(
        to_uint8(torch.tensor([-1.2, 1.3])), torch.tensor([0, 255], dtype=torch.uint8)
    )


@pytest.fixture(scope="module")
def cluster() -> ClusterTokenizer:
    """A Cluster tokenizer around a random EfficientNet-Lite0 at 32 px (2x2 tokens)."""
    torch.manual_seed(0)
    teacher = TeacherConfig(name="efficientnet_lite0", weights=None, image_size=32)
    return ClusterTokenizer(
        ClusterConfig(teacher=teacher, quantizer=VectorQuantizerConfig.preset("cluster", 8, 112))
    )


@pytest.mark.slow  # timm import
def test_cluster_holds_only_the_codebook(cluster: ClusterTokenizer) -> None:
    assert list(cluster.state_dict()) == ["quantizer.codebook", "quantizer.initialized",
                                          "quantizer.reviver.usage"]  # fmt: skip
    assert [name for name, _ in cluster.named_parameters()] == ["quantizer.codebook"]
    cluster.train()
    assert not cluster.teacher.network.training  # frozen: never in training mode
    assert cluster.grid_size(256) == (2, 2) and cluster.num_codes == 8


@pytest.mark.slow  # timm import
def test_cluster_encodes_the_teacher_features(cluster: ClusterTokenizer) -> None:
    original = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    image = original.float() / 127.5 - 1.0
    cluster.eval()
    ids = cluster.encode(image)  # (3, 2, 2)
    features = cluster.teacher(original)  # (3, 112, 2, 2)
    # brute force: the code of highest cosine similarity for every position
    similarity = torch.einsum(
        "bdhw,kd->bkhw",
        F.normalize(features, dim=1),
        F.normalize(cluster.quantizer.codebook.detach(), dim=1),
    )
    torch.testing.assert_close(ids, similarity.argmax(dim=1))
    torch.testing.assert_close(cluster(original).indices, ids)
    torch.testing.assert_close(cluster.codes(ids), cluster.quantizer.codes(ids))


@pytest.mark.slow  # timm import
def test_cluster_rejects_a_codebook_of_the_wrong_width() -> None:
    teacher = TeacherConfig(name="efficientnet_lite0", weights=None, image_size=32)
    config = ClusterConfig(
        teacher=teacher, quantizer=VectorQuantizerConfig.preset("cluster", 8, 768)
    )
    with pytest.raises(UserError, match=r"quantizer.dim is 768 .* 112-d features"):
        ClusterTokenizer(config)


def test_reference_cluster_config() -> None:
    config = ClusterConfig()
    assert config.teacher.name == "clip" and config.teacher.with_projection is False
    assert config.teacher.image_size == 256
    q = config.quantizer
    assert (q.num_codes, q.dim, q.distance, q.init, q.update) == (
        8192,
        768,
        "cosine",
        "uniform",
        "gradient",
    )
    assert q.resolved_codebook_weight == 1.0 and q.commitment_weight == 0.0
    assert q.cvq is not None and q.cvq.sync
