"""Which files are images and how one is decoded, shared by the datasets and ``fid``.

Kept apart from ``vq.train.data`` (whose package imports torchvision) so that ``fid
--images`` reads folders without paying for the dataset machinery.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"}
)

# "image file is truncated" are OSErrors; corrupt headers raise ValueError or SyntaxError.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def load_rgb(path: Path) -> Image.Image:
    """Decode the whole file (so truncation surfaces here) and convert it to RGB."""
    with Image.open(path) as image:
        return image.convert("RGB")
