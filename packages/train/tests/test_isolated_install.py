"""vq-tokenizers + vq-core install and work alone, from their built wheels, and so do they
with vq-decoders; vq-generators + vq-core install and sample alone.

Builds the three wheels with ``uv build``, installs vq-core and vq-tokenizers (with its
``teachers`` extra) into a fresh virtual environment of the current interpreter
(dependencies from the uv cache or PyPI; no interpreter download), and runs a downstream
user's script there: build a tiny tokenizer of each kind (VQGAN, FSQ, VQ-KD, Cluster), save
and reload it, encode and decode, and check that no other vq package is importable. Then it
adds the vq-decoders wheel and does the same for VQ-KD and Cluster with pixel decoders.
A second environment gets only vq-core and vq-generators: a tiny LLaMA samples token
grids with and without its KV cache, and no tokenizer package is importable. Set
``VQ_SKIP_ISOLATED=1`` to skip both (e.g. offline).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# A tiny VQ-KD (32 px -> 4x4 tokens) and a Cluster on a random EfficientNet-Lite0 (64 px).
FEATURE_CONFIGS = """
from vq.tokenizers.models.cluster import ClusterConfig
from vq.tokenizers.models.vqkd import VQKDConfig
from vq.tokenizers.quantizers import VectorQuantizerConfig
from vq.tokenizers.teachers import TeacherConfig
from vq.tokenizers.vit import ViTConfig

vqkd = VQKDConfig(
    encoder=ViTConfig.preset("tiny"),
    quantizer=VectorQuantizerConfig.preset("vqkd", 16, 8),
    decoder=ViTConfig.preset("tiny", patch_size=1, in_chans=8, depth=1, out_dim=12, grid_size=4),
)
teacher = TeacherConfig(name="efficientnet_lite0", weights=None, image_size=64)
cluster = ClusterConfig(teacher=teacher, quantizer=VectorQuantizerConfig.preset("cluster", 16, 112))
"""

USER_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys, tempfile
    from pathlib import Path
    import torch
    from vq.core.errors import UserError
    from vq.tokenizers.api import Tokenizer
    from vq.tokenizers.models.pixel_tokenizer import PixelTokenizer, PixelTokenizerConfig
    from vq.tokenizers.quantizers import FSQConfig, VectorQuantizerConfig

    torch.manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    root = Path(tempfile.mkdtemp())

    def round_trip(model, name, pixels):
        tokenizer = Tokenizer(model)
        tokenizer.save_pretrained(root / name)
        loaded = Tokenizer.from_pretrained(root / name)
        ids = loaded.encode(images)
        assert torch.equal(ids, tokenizer.encode(images)), name
        assert torch.equal(loaded.codes(ids), tokenizer.codes(ids)), name
        if pixels:
            assert torch.equal(loaded.decode(ids, uint8=True), tokenizer.decode(ids, uint8=True))
        else:
            try:
                loaded.decode(ids)
                raise AssertionError(name + " decoded without a pixel decoder")
            except UserError:
                pass
        return f"{name}{tuple(ids.shape)}"

    shapes = []
    for name, quantizer in (("vqgan", VectorQuantizerConfig(num_codes=32, dim=8)),
                            ("fsq", FSQConfig(levels=[8, 5, 5, 5]))):
        config = PixelTokenizerConfig.from_preset("tiny", quantizer)
        shapes.append(round_trip(PixelTokenizer(config), name, pixels=True))
    others = [m for m in ("vq.train", "vq.generators", "vq.decoders")
              if importlib.util.find_spec(m) is not None]
    assert not others, others
    heavy = [m for m in ("torchvision", "torch_fidelity", "tensorboard") if m in sys.modules]
    assert not heavy, heavy

    from vq.tokenizers.models.cluster import ClusterTokenizer
    from vq.tokenizers.models.vqkd import VQKDTokenizer
    {feature_configs}
    shapes.append(round_trip(VQKDTokenizer(vqkd), "vqkd", pixels=False))
    shapes.append(round_trip(ClusterTokenizer(cluster), "cluster", pixels=False))

    described = json.loads((root / "vqgan" / "config.json").read_text())
    (root / "vqgan" / "config.json").write_text(json.dumps({**described, "kind": "decoded_tokenizer"}))
    try:
        Tokenizer.from_pretrained(root / "vqgan")
        raise AssertionError("a decoded_tokenizer loaded without vq-decoders")
    except UserError as error:
        assert "install vq-decoders" in str(error), error
    print("ok", " ".join(shapes))
    """
).replace("{feature_configs}", FEATURE_CONFIGS)

# Run in the same environment after the vq-decoders wheel is installed into it.
DECODERS_SCRIPT = textwrap.dedent(
    """
    import tempfile
    from pathlib import Path
    import torch
    from vq.decoders import DecodedTokenizer, DecodedTokenizerConfig
    from vq.decoders.api import Tokenizer
    from vq.tokenizers.autoencoders.vqgan import VQGANDecoderConfig
    from vq.tokenizers.connectors import ConnectorConfig

    torch.manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    {feature_configs}
    shapes = []
    for name, tokenizer in (("vqkd", vqkd), ("cluster", cluster)):
        pair = DecodedTokenizer(DecodedTokenizerConfig(
            tokenizer=tokenizer,
            pre_decode=ConnectorConfig(channels=(tokenizer.quantizer.dim, 16)),
            decoder=VQGANDecoderConfig(in_channels=16, width=8, width_mults=(2, 1, 1, 1),
                                       depth=1, norm_groups=4),
        ))
        original = Tokenizer(pair)
        directory = Path(tempfile.mkdtemp())
        original.save_pretrained(directory)
        loaded = Tokenizer.from_pretrained(directory)
        ids = loaded.encode(images)
        assert torch.equal(ids, original.encode(images)), name
        recon = loaded.decode(ids, uint8=True)
        assert torch.equal(recon, original.decode(ids, uint8=True)), name
        shapes.append(f"{name}{tuple(ids.shape)}->{tuple(recon.shape)}")
    print("ok", " ".join(shapes))
    """
).replace("{feature_configs}", FEATURE_CONFIGS)

# Run in an environment with only vq-core and vq-generators.
GENERATORS_SCRIPT = textwrap.dedent(
    """
    import importlib.util
    import torch
    from vq.generators import ProposalNetworkConfig, build_proposal_network, generate

    for other in ("vq.tokenizers", "vq.decoders", "vq.train"):
        assert importlib.util.find_spec(other) is None, other
    torch.manual_seed(0)
    config = ProposalNetworkConfig(architecture="llama", preset="tiny", overrides={"depth": 1})
    model = build_proposal_network(config, codebook_size=16, num_classes=4)
    classes = torch.tensor([0, 3])
    grids = [
        generate(model, classes, (2, 2), 16, 4, generator=torch.Generator().manual_seed(1),
                 use_cache=cache)
        for cache in (True, False)
    ]
    assert torch.equal(grids[0], grids[1]) and int(grids[0].max()) < 16
    print("ok", tuple(grids[0].shape))
    """
)


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)  # uv must target the fresh environment, not the workspace's
    result = subprocess.run(command, capture_output=True, text=True, env=env, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("VQ_SKIP_ISOLATED") == "1", reason="VQ_SKIP_ISOLATED=1")
def test_tokenizers_install_and_run_without_the_rest(tmp_path):
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    dist = tmp_path / "dist"
    for package in ("vq-core", "vq-tokenizers", "vq-decoders"):
        run([uv, "build", "-q", "--package", package, "--wheel", "--out-dir", str(dist)], cwd=ROOT)
    wheels = sorted(dist.glob("*.whl"))
    assert [w.name.split("-")[0] for w in wheels] == ["vq_core", "vq_decoders", "vq_tokenizers"]
    for wheel, own in zip(wheels, ("vq/core/", "vq/decoders/", "vq/tokenizers/")):
        code = [
            n
            for n in zipfile.ZipFile(wheel).namelist()
            if not n.split("/")[0].endswith(".dist-info")
        ]
        assert code and all(n.startswith(own) for n in code), code  # no vq/__init__.py either

    venv = tmp_path / "venv"
    run([uv, "venv", "-q", str(venv), "--python", sys.executable])
    python = venv / "bin" / "python"
    core, decoders, tokenizers = map(str, wheels)
    # Cluster's teachers are built by timm: the "teachers" extra.
    run([uv, "pip", "install", "-q", "--python", str(python), core, f"{tokenizers}[teachers]"])
    result = run([str(python), "-c", USER_SCRIPT], cwd=tmp_path)
    shapes = "vqgan(2, 8, 8) fsq(2, 8, 8) vqkd(2, 4, 4) cluster(2, 4, 4)"
    assert result.stdout.strip() == f"ok {shapes}"

    run([uv, "pip", "install", "-q", "--python", str(python), decoders])
    result = run([str(python), "-c", DECODERS_SCRIPT], cwd=tmp_path)
    shapes = "vqkd(2, 4, 4)->(2, 3, 32, 32) cluster(2, 4, 4)->(2, 3, 32, 32)"
    assert result.stdout.strip() == f"ok {shapes}"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("VQ_SKIP_ISOLATED") == "1", reason="VQ_SKIP_ISOLATED=1")
def test_generators_install_and_sample_without_any_tokenizer(tmp_path):
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    dist = tmp_path / "dist"
    for package in ("vq-core", "vq-generators"):
        run([uv, "build", "-q", "--package", package, "--wheel", "--out-dir", str(dist)], cwd=ROOT)
    core, generators = map(str, sorted(dist.glob("*.whl")))
    venv = tmp_path / "venv"
    run([uv, "venv", "-q", str(venv), "--python", sys.executable])
    python = venv / "bin" / "python"
    run([uv, "pip", "install", "-q", "--python", str(python), core, generators])
    result = run([str(python), "-c", GENERATORS_SCRIPT], cwd=tmp_path)
    assert result.stdout.strip() == "ok (2, 2, 2)"
