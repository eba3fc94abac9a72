"""Text-line images as the angle classifier and the recogniser take them.

Both models read a line ``48`` pixels high (``cls_image_shape`` and ``rec_img_shape`` in the
package's ``config.yaml``), BGR, scaled to ``[-1, 1]``, channels first, padded on the right with
zeros to the width of the batch. A line keeps its aspect ratio: the classifier squeezes a line
wider than its ``192`` columns into them, the recogniser takes any width (a batch is padded to
its widest line, and to at least ``320``, the width it was trained at).

Lines travel between stages already resized to the model's height as uint8 (``to_height``),
so the batched recognition stage only normalises and pads them.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

#: Lines longer than this many pixels (at the model's height) are squeezed to it: about 70
#: characters, more than any line a detector box holds in practice.
MAX_WIDTH = 2400


def to_height(line: np.ndarray, height: int) -> np.ndarray:
    """Resize a cropped line (uint8 ``h x w x 3``) to ``height`` rows, keeping its aspect ratio."""
    rows, columns = line.shape[:2]
    width = min(MAX_WIDTH, max(1, math.ceil(height * columns / max(rows, 1))))
    return cv2.resize(line, (width, height), interpolation=cv2.INTER_LINEAR)


def _normalise_into(target: np.ndarray, line: np.ndarray) -> None:
    """Write ``line`` (uint8 HWC) into ``target`` (float32 CHW) as ``pixel / 127.5 - 1``."""
    np.multiply(line.transpose(2, 0, 1), 1 / 127.5, out=target, casting="unsafe")
    target -= 1.0


def classifier_batch(lines: Sequence[np.ndarray], width: int) -> np.ndarray:
    """The angle classifier's input for lines already at its height.

    Args:
        lines: uint8 ``height x w x 3`` lines.
        width: the classifier's input width; wider lines are squeezed into it.

    Returns:
        float32 ``n x 3 x height x width``.
    """
    height = lines[0].shape[0] if lines else 1
    batch = np.zeros((len(lines), 3, height, width), np.float32)
    for index, line in enumerate(lines):
        if line.shape[1] > width:
            line = cv2.resize(line, (width, height), interpolation=cv2.INTER_LINEAR)
        _normalise_into(batch[index, :, :, : line.shape[1]], line)
    return batch


def recogniser_batch(lines: Sequence[np.ndarray], min_width: int) -> np.ndarray:
    """The recogniser's input: lines at its height, padded to the widest (``min_width`` at least).

    Returns:
        float32 ``n x 3 x height x width``.
    """
    height = lines[0].shape[0]
    width = max(min_width, *(line.shape[1] for line in lines))
    batch = np.zeros((len(lines), 3, height, width), np.float32)
    for index, line in enumerate(lines):
        _normalise_into(batch[index, :, :, : line.shape[1]], line)
    return batch
