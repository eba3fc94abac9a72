"""Request bodies (JPEG or PNG files) to pixel arrays of the size the pipeline works at.

Large photos are decoded straight at a reduced size: the package's ``Global.max_side_len``
(2,000 pixels) bounds the image the pipeline works on, as in PaddleOCR, and a JPEG decoder can
scale by 1/2, 1/4 or 1/8 while it decodes (Pillow's ``draft``), which makes a 12-megapixel
photo several times cheaper to open. The EXIF orientation is applied, so boxes are in the
picture as a viewer shows it.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from mosec.errors import DecodingError

#: Formats accepted as request bodies.
FORMATS = ("JPEG", "PNG")
#: Larger images are refused (400) before they are decoded.
MAX_PIXELS = 40_000_000
#: Smaller images cannot hold a line the detector finds.
MIN_SIDE = 16
#: EXIF orientations that swap width and height (a photo taken with the camera on its side).
_TRANSPOSED = (5, 6, 7, 8)


@dataclass(frozen=True)
class Decoded:
    """An image ready for the pipeline."""

    #: ``H x W x 3`` uint8, RGB, at most ``max_side`` pixels on its longer side.
    pixels: np.ndarray
    #: ``(width, height)`` of the picture as sent (after its EXIF orientation).
    size: tuple[int, int]


def decode(data: bytes, max_side: int) -> Decoded:
    """Decode one request body.

    Args:
        data: the file's bytes.
        max_side: longer side of the result; larger pictures are scaled down to it.

    Raises:
        DecodingError: the body is not a JPEG or PNG image, is corrupt or truncated, or is too
            large or too small (400, for this request only).
    """
    try:
        image = Image.open(io.BytesIO(data))
    except Exception as err:  # whatever Pillow raises, the cause is the body
        raise DecodingError("expected a JPEG or PNG image") from err
    if image.format not in FORMATS:
        raise DecodingError(f"expected a JPEG or PNG image, got {image.format}")
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise DecodingError(f"{width}x{height} is over {MAX_PIXELS // 1_000_000} megapixels")
    if min(width, height) < MIN_SIDE:
        raise DecodingError(f"{width}x{height} is too small to hold text")
    if image.getexif().get(0x0112, 1) in _TRANSPOSED:
        width, height = height, width
    scale = min(1.0, max_side / max(width, height))
    try:
        if scale < 1.0:
            # For a JPEG: decode at the smallest 1/2^k size still at least as large as needed.
            image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
        image.load()
        image = ImageOps.exif_transpose(image) or image
        rgb = image.convert("RGB")
    except Exception as err:  # a truncated or corrupt file
        raise DecodingError(f"the image cannot be decoded: {err}") from err
    if max(rgb.size) > max_side:
        target = (round(width * scale), round(height * scale))
        rgb = rgb.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return Decoded(np.asarray(rgb), (width, height))
