"""Boxes of text lines: cutting them out of the image, and putting them in reading order.

A box is a quadrilateral, four ``(x, y)`` corners as float32, in the order the detector's
post-processing gives them: top-left, top-right, bottom-right, bottom-left of the text as it
lies in the image (for a line printed upside down that is its bottom-right first; the angle
classifier sorts that out later).
"""

from __future__ import annotations

from typing import List, Sequence

import cv2
import numpy as np

#: Boxes thinner than this (pixels) hold no readable text.
MIN_SIDE = 4
#: A crop this much taller than wide is read as vertical text, turned a quarter.
VERTICAL_RATIO = 1.5
#: Two boxes are on one line of text when their centres are closer vertically than this
#: fraction of the smaller box's height.
SAME_LINE = 0.5


def sides(box: np.ndarray) -> tuple[float, float]:
    """Width and height of a box: its longer top/bottom side and its longer left/right side."""
    width = max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[3] - box[2]))
    height = max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2]))
    return float(width), float(height)


def keep_readable(boxes: np.ndarray) -> np.ndarray:
    """The boxes whose both sides are at least :data:`MIN_SIDE` pixels, as float32 ``(n, 4, 2)``."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4, 2)
    keep = [i for i, box in enumerate(boxes) if min(sides(box)) >= MIN_SIDE]
    return boxes[keep]


def crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The box's content as an upright rectangle (a perspective warp of the quadrilateral).

    The output is as wide and as tall as the box's longer sides, so no resolution is lost;
    pixels outside the image repeat its edge. A crop much taller than wide is turned a quarter
    counter-clockwise, since the recognition model reads horizontal lines only.

    Args:
        image: ``H x W x 3`` uint8 (a read-only view is fine).
        box: the four corners, as :mod:`geometry` describes them.
    """
    width, height = (max(1, int(round(side))) for side in sides(box))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    warp = cv2.getPerspectiveTransform(np.asarray(box, np.float32), target)
    line = cv2.warpPerspective(
        image, warp, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    if height >= VERTICAL_RATIO * width:
        line = np.ascontiguousarray(np.rot90(line))
    return line


def reading_order(boxes: Sequence[np.ndarray]) -> List[int]:
    """Indices of ``boxes`` in reading order: lines top to bottom, boxes of a line left to right.

    A box joins the line above when their vertical centres are closer than :data:`SAME_LINE`
    times the smaller of their heights; a line's position is its first box's centre.
    """
    centres = [np.asarray(box, np.float64).mean(axis=0) for box in boxes]
    heights = [max(sides(np.asarray(box))[1], 1.0) for box in boxes]
    lines: List[List[int]] = []
    for index in sorted(range(len(boxes)), key=lambda i: (centres[i][1], centres[i][0])):
        if lines:
            first = lines[-1][0]
            gap = abs(centres[index][1] - centres[first][1])
            if gap < SAME_LINE * min(heights[index], heights[first]):
                lines[-1].append(index)
                continue
        lines.append([index])
    return [i for line in lines for i in sorted(line, key=lambda i: centres[i][0])]
