"""Write a dataset's split into tar shards in the WebDataset layout (see ``shards``).

``source_samples`` gives the untransformed samples of a built dataset in its index order:
the bytes of each image file as they are on disk (a file that will not decode is copied
too, so ``on_bad_image`` treats it in the shards as it did in the folder), or a lossless
PNG for the embedded photos. ``write_shards`` writes them ``samples_per_shard`` at a time,
each shard under a temporary name renamed when complete, and the index last, so a split
with an ``index.json`` is always whole.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

from vq.core.errors import UserError
from vq.train.data.base import ImageFileDataset
from vq.train.data.photos import PHOTOS, PhotosDataset, _cached_crops
from vq.train.data.shards import INDEX_ARRAYS, INDEX_FORMAT, INDEX_JSON, ShardsDataset

KEY_DIGITS = 12
# WebDataset decoders know "jpg"; keep every other suffix as it is (lower case).
EXTENSIONS = {"jpeg": "jpg"}


@dataclass(frozen=True)
class SourceSample:
    id: str
    category: int
    ext: str
    data: bytes


def classes_of(dataset: Dataset) -> list[str]:
    if isinstance(dataset, ConcatDataset):
        return classes_of(dataset.datasets[0])
    if isinstance(dataset, PhotosDataset):
        return [name for name, *_ in PHOTOS]
    return list(getattr(dataset, "classes", [""]))


def source_samples(dataset: Dataset) -> Iterator[SourceSample]:
    """The samples of ``dataset`` before any transform, in index order."""
    if isinstance(dataset, ConcatDataset):
        for part in dataset.datasets:
            yield from source_samples(part)
    elif isinstance(dataset, ImageFileDataset):
        for i in range(len(dataset)):
            path = dataset.path(i)
            try:
                data = path.read_bytes()
            except OSError as error:
                raise UserError(f"cannot read {path}: {error.strerror or error}") from None
            ext = path.suffix.lower().lstrip(".")
            yield SourceSample(dataset.id(i), dataset.category(i), EXTENSIONS.get(ext, ext), data)
    elif isinstance(dataset, PhotosDataset):
        crops = _cached_crops()
        for i in dataset._indices:
            id_, category, image = crops[i]
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            yield SourceSample(id_, category, "png", buffer.getvalue())
    elif isinstance(dataset, ShardsDataset):  # re-shard, e.g. with another shard size
        for i in range(len(dataset)):
            ext = dataset.index.exts[i].decode()
            yield SourceSample(dataset.id(i), dataset.category(i), ext, dataset.raw(i))
    else:
        raise UserError(f"cannot write a {type(dataset).__name__} into shards")


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # mtime 0: shards are reproducible
    tar.addfile(info, io.BytesIO(data))


def _image_members(path: Path) -> list[tuple[int, int]]:
    """(data offset, size) of every image member of the shard just written, in order."""
    with tarfile.open(path, "r:") as tar:
        return [
            (m.offset_data, m.size)
            for m in tar.getmembers()
            if m.name.rsplit(".", 1)[-1] not in ("cls", "json")
        ]


def _replace_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def _chunks(samples: Iterator[SourceSample], size: int) -> Iterator[list[SourceSample]]:
    chunk: list[SourceSample] = []
    for sample in samples:
        chunk.append(sample)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _write_shard(path: Path, first: int, samples: list[SourceSample]) -> list[tuple[int, int]]:
    """One tar of ``samples`` (keys numbered from ``first``), renamed to ``path`` when
    complete; returns the (data offset, size) of each image member."""
    partial = path.with_name(path.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.USTAR_FORMAT) as tar:
        for number, sample in enumerate(samples, first):
            key = f"{number:0{KEY_DIGITS}d}"
            meta = {"id": sample.id, "category": sample.category}
            _member(tar, f"{key}.cls", str(sample.category).encode())
            _member(tar, f"{key}.json", json.dumps(meta).encode())
            _member(tar, f"{key}.{sample.ext}", sample.data)
    os.replace(partial, path)
    return _image_members(path)


def write_shards(
    dataset: Dataset, out: Path, split: str, samples_per_shard: int, log: bool = False
) -> dict[str, int]:
    """Write ``dataset`` as ``out/<split>-NNNNNN.tar`` + index; returns samples and shards."""
    out.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, int | str]] = []
    ids, categories, numbers, exts, members = [], [], [], [], []
    for chunk in _chunks(source_samples(dataset), samples_per_shard):
        name = f"{split}-{len(shards):06d}.tar"
        members += _write_shard(out / name, len(ids), chunk)
        ids += [sample.id.encode() for sample in chunk]
        categories += [sample.category for sample in chunk]
        exts += [sample.ext.encode() for sample in chunk]
        numbers += [len(shards)] * len(chunk)
        shards.append({"name": name, "samples": len(chunk), "bytes": (out / name).stat().st_size})
        if log:
            print(f"{split}: wrote {name} ({len(chunk)} samples)", flush=True)
    arrays = io.BytesIO()
    np.savez(
        arrays,
        ids=np.array(ids, dtype=np.bytes_),
        categories=np.array(categories, dtype=np.int64),
        shards=np.array(numbers, dtype=np.int32),
        offsets=np.array([offset for offset, _ in members], dtype=np.int64),
        sizes=np.array([size for _, size in members], dtype=np.int64),
        exts=np.array(exts, dtype=np.bytes_),
    )
    _replace_atomically(out / INDEX_ARRAYS, arrays.getvalue())
    index = {
        "format": INDEX_FORMAT,
        "split": split,
        "classes": classes_of(dataset),
        "shards": shards,
    }
    _replace_atomically(out / INDEX_JSON, json.dumps(index, indent=1).encode())
    return {"samples": len(ids), "shards": len(shards)}
