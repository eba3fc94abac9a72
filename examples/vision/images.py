"""The demo's request bodies: scikit-image's bundled sample images, encoded in memory.

The pictures ship inside the scikit-image wheel (``skimage.data``), so nothing is downloaded.
Each is encoded as JPEG or PNG with Pillow, the way a client would upload a file; the set mixes
sizes (300 x 451 to 1411 x 1411) and modes (RGB, greyscale, RGBA) so the decoder sees them all.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

#: ``skimage.data`` function names and the format each is sent as (RGBA needs PNG).
SAMPLES = (
    ("astronaut", "JPEG"),
    ("camera", "PNG"),
    ("chelsea", "JPEG"),
    ("coffee", "PNG"),
    ("rocket", "JPEG"),
    ("hubble_deep_field", "JPEG"),
    ("retina", "JPEG"),
    ("logo", "PNG"),
)


@dataclass(frozen=True)
class SampleImage:
    """One encoded image, ready to be a request body."""

    #: The ``skimage.data`` name.
    name: str
    #: ``JPEG`` or ``PNG``.
    format: str
    #: Pixel size as ``(width, height)``.
    size: tuple[int, int]
    #: Pillow's mode of the picture: ``RGB``, ``L`` or ``RGBA``.
    mode: str
    #: The encoded file.
    body: bytes

    @property
    def filename(self) -> str:
        """A file name for display, such as ``astronaut.jpg``."""
        return f"{self.name}.{'jpg' if self.format == 'JPEG' else 'png'}"


def encode(pixels: object, image_format: str) -> tuple[Image.Image, bytes]:
    """Encode an array of pixels (H x W, H x W x 3 or H x W x 4 uint8) as JPEG or PNG."""
    image = Image.fromarray(pixels)  # type: ignore[arg-type]
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **({"quality": 90} if image_format == "JPEG" else {}))
    return image, buffer.getvalue()


def sample_images() -> list[SampleImage]:
    """The sample pictures, each encoded in its format.

    Raises:
        ImportError: scikit-image is not installed.
    """
    from skimage import data  # imported here: only the client needs it

    images = []
    for name, image_format in SAMPLES:
        image, body = encode(getattr(data, name)(), image_format)
        images.append(SampleImage(name, image_format, image.size, image.mode, body))
    return images
