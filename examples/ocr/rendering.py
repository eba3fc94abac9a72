"""Test images with known text: lines drawn on scikit-image's sample photographs.

Each :class:`Scene` names a photograph bundled with scikit-image (``skimage.data``, nothing is
downloaded), the size to scale it to, and the lines to draw on it top to bottom: their text, a
font height (a fraction of the picture's shorter side), an angle (180 is upside down) and a
style: dark text on a translucent light plate, as on a sign or a label, or light text with a
dark outline straight on the photograph, as in a caption. Fonts are Debian's DejaVu
(``fonts-dejavu-core``) when installed, otherwise Pillow's bundled font.

The expected text of a picture is its lines in reading order (top to bottom, as drawn), joined
by newlines: what the OCR answer's ``text`` holds when everything was read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Tuple

from PIL import Image, ImageDraw, ImageFont

#: Debian's DejaVu fonts, by the name a line asks for.
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
FONTS = {"sans": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf", "serif": "DejaVuSerif.ttf"}
#: Margin around the lines, and the gap between them, as fractions of the shorter side.
MARGIN = 0.04
GAP = 0.03
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Line:
    """One line of text to draw."""

    text: str
    #: Font size as a fraction of the picture's shorter side.
    size: float
    #: Counter-clockwise rotation in degrees; 180 draws it upside down.
    angle: float = 0.0
    #: ``plate`` (dark on a light plate) or ``outline`` (light with a dark outline).
    style: str = "plate"
    font: str = "sans"


@dataclass(frozen=True)
class Scene:
    """A picture to render: a sample photograph, its size, its lines and its file format."""

    name: str
    background: str
    size: Tuple[int, int]
    lines: Tuple[Line, ...]
    format: str = "JPEG"


@dataclass(frozen=True)
class Rendered:
    """A rendered picture, encoded, with the text it shows."""

    name: str
    size: Tuple[int, int]
    format: str
    lines: Tuple[str, ...]
    body: bytes

    @property
    def expected(self) -> str:
        """The text in reading order, one line a line."""
        return "\n".join(self.lines)

    @property
    def megapixels(self) -> float:
        """Width times height, in millions of pixels."""
        return self.size[0] * self.size[1] / 1e6


def font(name: str, pixels: int) -> ImageFont.FreeTypeFont:
    """The font ``name`` of :data:`FONTS` at ``pixels`` size, or Pillow's own when not installed."""
    path = DEJAVU / FONTS[name]
    if path.exists():
        return ImageFont.truetype(str(path), pixels)
    return ImageFont.load_default(pixels)  # type: ignore[return-value]


def background(name: str, size: Tuple[int, int]) -> Image.Image:
    """The ``skimage.data`` photograph ``name`` as RGB, scaled (and stretched) to ``size``."""
    from skimage import data  # only the client side needs scikit-image

    pixels = getattr(data, name)()
    if isinstance(pixels, tuple):  # a stereo pair (and its disparity): the left view
        pixels = pixels[0]
    picture = Image.fromarray(pixels).convert("RGB")
    return picture.resize(size, Image.Resampling.BICUBIC)


def draw_line(line: Line, side: int, max_width: int) -> Image.Image:
    """One line as an RGBA layer (rotated), its font shrunk until it fits in ``max_width``."""
    pixels = max(8, round(line.size * side))
    while True:
        face = font(line.font, pixels)
        left, top, right, bottom = face.getbbox(line.text)
        pad = max(4, pixels // 4)
        layer = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
        pen = ImageDraw.Draw(layer)
        origin = (pad - left, pad - top)
        if line.style == "plate":
            pen.rounded_rectangle(
                (0, 0, layer.width - 1, layer.height - 1), radius=pad, fill=(250, 250, 245, 215)
            )
            pen.text(origin, line.text, font=face, fill=(20, 20, 30, 255))
        else:
            stroke = max(2, pixels // 14)
            pen.text(
                origin,
                line.text,
                font=face,
                fill=(255, 255, 255, 255),
                stroke_width=stroke,
                stroke_fill=(0, 0, 0, 255),
            )
        if line.angle:
            layer = layer.rotate(line.angle, resample=Image.Resampling.BICUBIC, expand=True)
        if layer.width <= max_width or pixels <= 8:
            return layer
        pixels = int(pixels * 0.9)


def render(scene: Scene) -> Rendered:
    """Draw the scene's lines top to bottom and encode the picture.

    Raises:
        ValueError: the lines do not fit in the picture's height.
    """
    picture = background(scene.background, scene.size)
    side = min(scene.size)
    margin, gap = round(MARGIN * side), round(GAP * side)
    y = margin
    for index, line in enumerate(scene.lines):
        layer = draw_line(line, side, scene.size[0] - 2 * margin)
        # Alternate left-aligned and indented lines, so boxes do not all share one edge.
        x = margin + (index % 2) * (scene.size[0] - 2 * margin - layer.width) // 3
        picture.paste(layer, (x, y), layer)
        y += layer.height + gap
    if y - gap + margin > scene.size[1]:
        raise ValueError(
            f"{scene.name}: the lines need {y} pixels, the picture has {scene.size[1]}"
        )
    buffer = io.BytesIO()
    options = {"quality": JPEG_QUALITY} if scene.format == "JPEG" else {}
    picture.save(buffer, format=scene.format, **options)
    return Rendered(
        scene.name,
        scene.size,
        scene.format,
        tuple(line.text for line in scene.lines),
        buffer.getvalue(),
    )


def render_all(scenes: Iterable[Scene]) -> List[Rendered]:
    """Render every scene, in order."""
    return [render(scene) for scene in scenes]
