"""Weight and checkpoint readers: a damaged or foreign file is one UserError naming it, and
a damaged checkpoint names the newest intact one to resume from."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from vq.core.checkpoint import Checkpointer, Tracked, TrainingState
from vq.core.errors import UserError
from vq.core.tensorfiles import check_readable, intact, read_tensors, read_torch, read_weights


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    tensors = {"w": torch.randn(64, 64)}
    made = {}
    for name in ("good", "truncated", "random", "empty"):
        made[f"{name}.safetensors"] = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(made[f"{name}.safetensors"]))
        made[f"{name}.pt"] = tmp_path / f"{name}.pt"
        torch.save(tensors, made[f"{name}.pt"])
    for suffix in (".safetensors", ".pt"):
        truncate(made[f"truncated{suffix}"])
        made[f"random{suffix}"].write_bytes(random.Random(0).randbytes(2000))
        made[f"empty{suffix}"].write_bytes(b"")
    return made


@pytest.mark.parametrize("name", ["truncated", "random", "empty"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_every_reader_names_a_damaged_file(files, name: str, suffix: str) -> None:
    path = files[name + suffix]
    readers = [read_weights, check_readable]
    readers.append(read_tensors if suffix == ".safetensors" else read_torch)
    for reader in readers:
        with pytest.raises(UserError, match=f"cannot read {path}: .*damaged") as caught:
            reader(path)
        assert "\n" not in str(caught.value)


def test_random_bytes_are_a_damaged_torch_file_whatever_the_unpickler_trips_on(
    tmp_path: Path,
) -> None:
    # most random files stop at an UnpicklingError; some at an IndexError, a KeyError or a
    # UnicodeDecodeError inside torch's weights-only unpickler (seeds 0-299 hit all four)
    path = tmp_path / "random.pt"
    for seed in range(300):
        path.write_bytes(random.Random(seed).randbytes(2000))
        with pytest.raises(UserError, match="damaged"):
            read_torch(path)


def test_good_files_read_and_missing_ones_are_named(files, tmp_path: Path) -> None:
    for suffix in (".safetensors", ".pt"):
        assert read_weights(files["good" + suffix])["w"].shape == (64, 64)
        check_readable(files["good" + suffix])
    with pytest.raises(UserError, match="not found"):
        read_tensors(tmp_path / "missing.safetensors")


def test_a_pickle_with_code_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "f": os.system}, path)  # weights_only refuses globals
    with pytest.raises(UserError, match=f"cannot read {path}"):
        read_torch(path)


def checkpoints(tmp_path: Path, iterations=(1, 2, 3)) -> tuple[Checkpointer, TrainingState]:
    model = nn.Linear(3, 2)
    checkpointer = Checkpointer(tmp_path / "checkpoints", fingerprint="f", strategy="ddp")
    state = TrainingState(modules={"model": Tracked(model)})
    for iteration in iterations:
        checkpointer.save(state, iteration)
    return checkpointer, state


@pytest.mark.parametrize("damaged", ["state.pt", "models/model.safetensors", "meta.json"])
def test_a_damaged_checkpoint_names_the_newest_intact_one(tmp_path: Path, damaged: str) -> None:
    checkpointer, state = checkpoints(tmp_path)
    root = (tmp_path / "checkpoints").resolve()
    truncate(root / "iter_3" / damaged)
    (root / "iter_2" / "state.pt").write_bytes(b"")  # older and damaged too
    assert not intact(root / "iter_2") and intact(root / "iter_1")
    with pytest.raises(UserError) as caught:
        checkpointer.load(state, root / "latest")
    message = str(caught.value)
    assert message.startswith(f"checkpoint {root / 'iter_3'} is damaged: cannot read ")
    assert str(root / "iter_3" / damaged) in message
    assert f"--load-from {root / 'iter_1'}" in message and "\n" not in message
    checkpointer.load(state, root / "iter_1")  # the named one resumes


def test_no_intact_checkpoint_is_said(tmp_path: Path) -> None:
    checkpointer, state = checkpoints(tmp_path, iterations=(1,))
    truncate(tmp_path / "checkpoints" / "iter_1" / "state.pt")
    with pytest.raises(UserError, match="no other checkpoint of this run is intact"):
        checkpointer.load(state, tmp_path / "checkpoints" / "latest")


def test_every_form_of_a_full_disk_reads_the_same(tmp_path: Path, monkeypatch) -> None:
    from collections import namedtuple

    from vq.core import tensorfiles

    usage = namedtuple("usage", "total used free")

    def zip_writer_fails(obj, f):  # how torch's zip writer reports a full disk
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", zip_writer_fails)
    monkeypatch.setattr(tensorfiles.shutil, "disk_usage", lambda p: usage(1 << 30, 1 << 30, 4096))
    with pytest.raises(OSError, match=r"No space left on device \(0 MiB free\)") as caught:
        tensorfiles.write_torch({}, tmp_path / "state.pt")
    assert caught.value.filename == str(tmp_path / "state.pt")

    def os_reports_it(tensors, filename):
        raise OSError(28, "No space left on device", filename)

    monkeypatch.setattr(tensorfiles, "save_file", os_reports_it)
    with pytest.raises(OSError, match="No space left on device"):
        tensorfiles.write_tensors({"w": torch.zeros(1)}, tmp_path / "w.safetensors")

    # with space left, the library's own first line is kept
    monkeypatch.setattr(tensorfiles.shutil, "disk_usage", lambda p: usage(1 << 40, 0, 1 << 40))
    with pytest.raises(OSError, match=r"enforce fail") as caught:
        tensorfiles.write_torch({}, tmp_path / "state.pt")
    assert "No space" not in str(caught.value)
