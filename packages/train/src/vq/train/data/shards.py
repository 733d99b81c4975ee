"""Datasets stored as tar shards in the WebDataset layout, read from a path or an fsspec URL.

A sharded split (written by the ``shard`` command, ``vq.train.shard_command``) is a folder::

    ROOT/<split>/index.json            format, classes, and per shard: name, samples, bytes
    ROOT/<split>/index.npz             per sample: id, category, shard, data offset, size, ext
    ROOT/<split>/<split>-000000.tar    key.cls  key.json  key.<jpg|png|...>  (one sample)

Keys are the sample's number in the split (``000000000042``), so ids with dots or odd
characters never break the WebDataset key rule; the item id is in ``key.json`` and in
``index.npz``. Image members hold the source file's bytes unchanged (the embedded photos,
which have no file, as lossless PNG), so decoding gives the folder dataset's pixels.

``ShardsDataset`` is map-style: item ``i`` is sample ``i`` of the split, read with one seek
into its shard at the offset the index records. The loop's sampler, per-sample seeds,
transforms, class mapping and ``on_bad_image`` therefore act exactly as on the folder
dataset the shards were written from: the same seed gives the same samples in the same
order, and a run resumes mid-epoch from the loop's data position like any other dataset.

``order="shards"`` trades that equality for reading shard by shard, which object stores
and clusters without a fast shared file system serve far better than random seeks: each
epoch permutes the shards (seeded by run seed and epoch), deals them to the ranks in turn
(the shard count must divide by the number of processes), and passes each rank's samples,
in shard order, through a seeded shuffle buffer of ``shuffle_buffer`` samples. Every rank
then stops at the shortest rank's count. The loop's sampler takes this order through
``epoch_order`` and positions it like any other, so resuming mid-epoch is still exact;
DataLoader workers take consecutive batches of their rank's stream in turn.

Everything that can disagree is checked when the dataset is built, before training: a
shard that is missing or shorter than the index says (truncated), per-shard sample counts
of ``index.json`` against ``index.npz``. Under ``on_bad_image="error"`` these stop with one
line; under ``"skip"`` the samples of a missing or truncated shard are dropped from their
batches (counted in ``batch["skipped"]``) and the count is logged once.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal

import numpy as np
from pydantic import PositiveInt
from torch.utils.data import Dataset

from vq.core import distributed
from vq.core.errors import UserError, few
from vq.core.logging import LOGGER
from vq.train.data.base import (
    BadImagePolicy,
    FileDatasetConfigBase,
    Item,
    Split,
    Transform,
    make_item,
)
from vq.train.image_files import DECODE_ERRORS, load_rgb

INDEX_FORMAT = "vq-shards/1"
INDEX_JSON = "index.json"
INDEX_ARRAYS = "index.npz"
ShardOrder = Literal["global", "shards"]


def is_url(root: str) -> bool:
    """True for ``s3://...``, ``gs://...``, ``https://...``: anything but a plain path."""
    return "://" in root and not root.startswith("file://")


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts]) if is_url(root) else os.path.join(root, *parts)


def _fsspec() -> Any:
    try:
        import fsspec  # optional: only URLs need it
    except ImportError:
        raise UserError(
            "reading shards from a URL needs fsspec (and its backend, e.g. s3fs or gcsfs): "
            "uv pip install 'vq-train[remote]' s3fs"
        ) from None
    return fsspec


def open_binary(location: str) -> IO[bytes]:
    """A seekable binary file for a local path or an fsspec URL."""
    if is_url(location):
        return _fsspec().open(location, "rb").open()
    return open(location.removeprefix("file://"), "rb")


def size_of(location: str) -> int | None:
    """Bytes of ``location``, or None when it does not exist."""
    if is_url(location):
        fs, path = _fsspec().core.url_to_fs(location)
        return int(fs.size(path)) if fs.exists(path) else None
    path = location.removeprefix("file://")
    return os.path.getsize(path) if os.path.isfile(path) else None


def read_bytes(location: str, what: str) -> bytes:
    if size_of(location) is None:
        raise UserError(f"{what} {location} does not exist (missing or mistyped root?)")
    with open_binary(location) as f:
        return f.read()


@dataclass(frozen=True)
class ShardIndex:
    """What ``index.json`` and ``index.npz`` of one split say."""

    classes: list[str]
    shard_names: list[str]
    shard_samples: list[int]
    shard_bytes: list[int]
    ids: np.ndarray  # (N,) bytes
    categories: np.ndarray  # (N,) int64
    shards: np.ndarray  # (N,) int32, index into shard_names
    offsets: np.ndarray  # (N,) int64, first byte of the image member's data
    sizes: np.ndarray  # (N,) int64
    exts: np.ndarray  # (N,) bytes, image member extension


def read_index(split_root: str) -> ShardIndex:
    """Read and cross-check the index of ``split_root``; any disagreement is a UserError."""
    where = join(split_root, INDEX_JSON)
    try:
        meta = json.loads(read_bytes(where, "shard index"))
    except json.JSONDecodeError as error:
        raise UserError(f"shard index {where} is not valid JSON: {error}") from None
    if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
        raise UserError(f"shard index {where} is not a {INDEX_FORMAT} index")
    arrays_at = join(split_root, INDEX_ARRAYS)
    try:
        with np.load(io.BytesIO(read_bytes(arrays_at, "shard index")), allow_pickle=False) as a:
            arrays = {k: a[k] for k in ("ids", "categories", "shards", "offsets", "sizes", "exts")}
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"shard index {arrays_at} cannot be read: {error}") from None
    try:
        entries = meta["shards"]
        index = ShardIndex(
            classes=list(meta["classes"]),
            shard_names=[e["name"] for e in entries],
            shard_samples=[int(e["samples"]) for e in entries],
            shard_bytes=[int(e["bytes"]) for e in entries],
            **arrays,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"shard index {where} lacks or mistypes an entry: {error!r}") from None
    counted = np.bincount(index.shards, minlength=len(entries)).tolist()
    if len(counted) != len(entries) or counted != index.shard_samples:
        wrong = [
            f"{name}: index.json says {said}, index.npz has {has}"
            for name, said, has in zip(index.shard_names, index.shard_samples, counted)
            if said != has
        ] or [f"index.npz names shard {len(counted) - 1} of {len(entries)}"]
        raise UserError(f"shard index of {split_root} disagrees with itself ({few(wrong, 2)})")
    if len(index.categories) and index.categories.max() >= len(index.classes):
        raise UserError(f"shard index of {split_root}: a category has no class name")
    return index


def check_shards(split_root: str, index: ShardIndex, on_bad_image: BadImagePolicy) -> set[int]:
    """The shards that are missing or truncated; an error unless ``on_bad_image="skip"``."""
    bad, problems = set(), []
    for number, (name, expected) in enumerate(zip(index.shard_names, index.shard_bytes)):
        found = size_of(join(split_root, name))
        if found is None:
            problems.append(f"shard {join(split_root, name)} is missing")
        elif found != expected:
            problems.append(
                f"shard {join(split_root, name)} has {found} bytes, the index says {expected} "
                "(truncated or rewritten?)"
            )
        else:
            continue
        bad.add(number)
    if problems and on_bad_image == "error":
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"{problems[0]}{more}; set on_bad_image='skip' to skip its samples")
    if problems:
        dropped = sum(index.shard_samples[n] for n in bad)
        LOGGER.warning("skipping %d samples of %d bad shards: %s", dropped, len(bad), problems[0])
    return bad


def buffer_shuffle(samples: np.ndarray, buffer: int, rng: np.random.Generator) -> np.ndarray:
    """``samples`` streamed through a shuffle buffer: once ``buffer`` samples are held, each
    new one replaces a uniformly drawn held one, which is emitted; the rest go out shuffled."""
    out = np.empty_like(samples)
    held = list(samples[:buffer])
    slots = rng.integers(0, len(held), size=max(len(samples) - buffer, 0)) if held else []
    for n, (slot, incoming) in enumerate(zip(slots, samples[buffer:])):
        out[n] = held[slot]
        held[slot] = incoming
    start = max(len(samples) - buffer, 0)
    out[start:] = rng.permutation(np.array(held, dtype=samples.dtype))
    return out


def check_divides(num_shards: int, world: int, split_root: str) -> None:
    if num_shards % world:
        raise UserError(
            f"{num_shards} shards of {split_root} do not divide across {world} processes; "
            "re-shard with another --samples-per-shard, or use order='global'"
        )


class ShardsDataset(Dataset):
    """Sample ``i`` of a sharded split (module docstring); picklable, opens files lazily."""

    def __init__(
        self,
        split_root: str,
        index: ShardIndex,
        transform: Transform,
        on_bad_image: BadImagePolicy = "error",
        bad_shards: Sequence[int] = (),
        order: ShardOrder = "global",
        shuffle_buffer: int = 1000,
    ) -> None:
        self.split_root = split_root
        self.order = order
        self.shuffle_buffer = shuffle_buffer
        self.index = index
        self.classes = index.classes
        self.transform = transform
        self.on_bad_image = on_bad_image
        self.bad_shards = frozenset(bad_shards)
        self._files: dict[int, IO[bytes]] = {}
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_files": {}}  # open handles stay in their process

    def __len__(self) -> int:
        return len(self.index.ids)

    def epoch_order(self, epoch: int, *, seed: int, world: int) -> list[int] | None:
        """The sample order of ``epoch`` in which rank ``r`` reads ``order[r::world]``;
        None under ``order="global"`` (the sampler's permutation, as for folders)."""
        if self.order == "global":
            return None
        check_divides(len(self.index.shard_names), world, self.split_root)
        rng = np.random.default_rng([seed, epoch])
        dealt = rng.permutation(len(self.index.shard_names))
        members = np.argsort(self.index.shards, kind="stable")  # sample numbers by shard
        starts = np.concatenate([[0], np.cumsum(self.index.shard_samples)])
        streams = []
        for rank in range(world):
            mine = [members[starts[s] : starts[s + 1]] for s in dealt[rank::world]]
            stream = np.concatenate(mine) if mine else np.empty(0, dtype=np.int64)
            rank_rng = np.random.default_rng([seed, epoch, rank])
            streams.append(buffer_shuffle(stream, self.shuffle_buffer, rank_rng))
        shortest = min(len(stream) for stream in streams)
        # (shortest, world) -> row-major: position k * world + r is sample k of rank r
        return np.stack([stream[:shortest] for stream in streams], axis=1).reshape(-1).tolist()

    def id(self, index: int) -> str:
        return self.index.ids[index].decode()

    def category(self, index: int) -> int:
        return int(self.index.categories[index])

    def location(self, index: int) -> str:
        return join(self.split_root, self.index.shard_names[int(self.index.shards[index])])

    def raw(self, index: int) -> bytes:
        """The image member's bytes of sample ``index`` (one seek and one read)."""
        if self._pid != os.getpid():  # a forked DataLoader worker: never share offsets
            self._files, self._pid = {}, os.getpid()
        shard = int(self.index.shards[index])
        if shard not in self._files:
            self._files[shard] = open_binary(self.location(index))
        f = self._files[shard]
        f.seek(int(self.index.offsets[index]))
        return f.read(int(self.index.sizes[index]))

    def __getitem__(self, index: int) -> Item | None:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        if int(self.index.shards[index]) in self.bad_shards:
            return None
        name = f"{self.id(index)}.{self.index.exts[index].decode()}"
        try:
            image = load_rgb(io.BytesIO(self.raw(index)))  # type: ignore[arg-type]
        except DECODE_ERRORS as error:
            if self.on_bad_image == "skip":
                return None
            raise UserError(
                f"cannot read image {name} in {self.location(index)}: {error} "
                "(set on_bad_image='skip' to skip such samples)"
            ) from error
        return make_item(self.id(index), image, self.category(index), self.transform)


class ShardsConfig(FileDatasetConfigBase):
    """Tar shards written by ``shard`` under ``root/<split>/``; ``root`` a path or URL."""

    kind: Literal["shards"] = "shards"
    root: str = "data/shards"
    order: ShardOrder = "global"
    """``global``: the folder dataset's order (random seeks); ``shards``: shard by shard."""
    shuffle_buffer: PositiveInt = 1000
    """Samples held by the shuffle buffer of ``order="shards"``."""

    def build(self, split: Split) -> ShardsDataset:
        split_root = join(self.root, split)
        index = read_index(split_root)
        bad = check_shards(split_root, index, self.on_bad_image)
        if self.order == "shards" and split == "train":
            check_divides(len(index.shard_names), distributed.world_size(), split_root)
        return ShardsDataset(
            split_root,
            index,
            self.transform(split),
            self.on_bad_image,
            bad,
            self.order,
            self.shuffle_buffer,
        )
