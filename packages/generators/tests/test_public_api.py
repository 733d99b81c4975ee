"""vq-generators' public API (README, "Public API": the networks, their configs, the
objectives and the samplers) against the checked-in public_api.json."""

from __future__ import annotations

from pathlib import Path

from vq.core.api_snapshot import check_api_snapshot, public_api


def test_the_public_api_matches_its_snapshot() -> None:
    api = public_api(["vq.generators"])
    assert {"generate", "parallel_decode", "Llama", "GPT2", "MaskGIT"} <= set(api["vq.generators"])
    check_api_snapshot(api, Path(__file__).with_name("public_api.json"), "vq-generators")
