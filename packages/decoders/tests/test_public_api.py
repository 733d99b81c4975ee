"""vq-decoders' public API (README, "Public API") against the checked-in public_api.json."""

from __future__ import annotations

from pathlib import Path

from vq.core.api_snapshot import check_api_snapshot, public_api


def test_the_public_api_matches_its_snapshot() -> None:
    api = public_api(["vq.decoders", "vq.decoders.api"])
    assert "DecodedTokenizer" in api["vq.decoders"] and "Tokenizer" in api["vq.decoders.api"]
    check_api_snapshot(api, Path(__file__).with_name("public_api.json"), "vq-decoders")
