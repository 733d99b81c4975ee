"""vq-tokenizers' public API (README, "Public API": the downstream API, the kinds, the
quantizers, the model configs, the converters) and its pretrained-directory format against
the checked-in public_api.json; directories of another format version are refused in one
line, a newer one with the advice to upgrade."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vq.core.api_snapshot import check_api_snapshot, public_api
from vq.core.errors import UserError
from vq.tokenizers import api as tokenizer_api
from vq.tokenizers.api import CONFIG_FILE, FORMAT, FORMAT_VERSION, Tokenizer
from vq.tokenizers.models import PixelTokenizer, PixelTokenizerConfig
from vq.tokenizers.quantizers import VectorQuantizerConfig

MODULES = (
    "vq.tokenizers.api",
    "vq.tokenizers.kinds",
    "vq.tokenizers.quantizers",
    "vq.tokenizers.models",
    "vq.tokenizers.models.vqkd",
    "vq.tokenizers.models.cluster",
    "vq.tokenizers.convert",
)


def tiny_tokenizer() -> Tokenizer:
    torch.manual_seed(0)
    quantizer = VectorQuantizerConfig(num_codes=16, dim=4)
    return Tokenizer(PixelTokenizer(PixelTokenizerConfig.from_preset("tiny", quantizer)))


def test_the_public_api_and_the_pretrained_format_match_their_snapshot() -> None:
    api = public_api(MODULES)
    api["pretrained directory"] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "readable_format_versions": list(tokenizer_api.READABLE_FORMAT_VERSIONS),
        "files": [tokenizer_api.CONFIG_FILE, tokenizer_api.WEIGHTS_FILE],
        "config.json keys": sorted(tiny_tokenizer().describe()),
    }
    assert {"Tokenizer", "FORMAT_VERSION"} <= set(api["vq.tokenizers.api"])
    assert {"VectorQuantizerConfig", "FSQConfig"} <= set(api["vq.tokenizers.quantizers"])
    check_api_snapshot(api, Path(__file__).with_name("public_api.json"), "vq-tokenizers")


@pytest.mark.parametrize(
    ("format_name", "version", "advice"),
    [(FORMAT, FORMAT_VERSION + 1, True), (FORMAT, None, False), ("diffusers", 1, False)],
)
def test_a_directory_of_another_format_is_refused(
    tmp_path: Path, format_name: str, version: int | None, advice: bool
) -> None:
    tokenizer = tiny_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(Tokenizer.from_pretrained(tmp_path).encode(images), tokenizer.encode(images))
    described = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert (described["format"], described["format_version"]) == (FORMAT, FORMAT_VERSION)
    described.update(format=format_name, format_version=version)
    if version is None:
        del described["format_version"]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(described))
    with pytest.raises(UserError) as error:
        Tokenizer.from_pretrained(tmp_path)
    message = str(error.value)
    assert "\n" not in message and f"version {version!r}" in message
    assert message.endswith("written by a newer vq-tokenizers: upgrade it") == advice
