"""Text detection on a batch of images: the DB model with the package's pre- and post-processing.

Each image is resized as the model expects (``DetPreProcess``: both sides multiples of 32,
scaled to [-1, 1]); the batch is padded to its largest image, run through the model once, and
each image's probability map, cut back to its own size, becomes boxes (``DBPostProcess``: the
binarised map's contours, scored, expanded by ``unclip_ratio`` and scaled to the image).

The package's settings come from its ``config.yaml``, except the input size: it lets the
detector upscale every image so its *shorter* side is 736 pixels (``limit_type: min``), which
gives every image its own large shape. Here the *longer* side is scaled to 960 pixels
(PaddleOCR's own default for this model), so images of any size share one bounded shape and
batch together; text lines should be at least about 1/50 of the picture's longer side.
"""

from __future__ import annotations

from typing import List, Sequence

import geometry
import models
import numpy as np
from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess, DetPreProcess

#: Longer side of the detector's input, in pixels.
SIDE = 960


class Detector:
    """Finds text-line boxes in images, several images per model call."""

    def __init__(self, threads: int) -> None:
        """Open the model and set up the package's processing with its settings.

        Args:
            threads: onnxruntime intra-op threads.
        """
        det = models.settings()["Det"]
        self.prepare = DetPreProcess(SIDE, "max", det["mean"], det["std"])
        self.boxes_of = DBPostProcess(
            thresh=det["thresh"],
            box_thresh=det["box_thresh"],
            max_candidates=det["max_candidates"],
            unclip_ratio=det["unclip_ratio"],
            score_mode=det["score_mode"],
            use_dilation=det["use_dilation"],
        )
        self.session = models.session("Det", threads)
        self.input = self.session.get_inputs()[0].name

    def __call__(self, images: Sequence[np.ndarray]) -> List[np.ndarray]:
        """The boxes of each image.

        Args:
            images: ``H x W x 3`` uint8 BGR images (read-only views are fine).

        Returns:
            One float32 ``n x 4 x 2`` array of corners per image, in that image's pixels.
        """
        found = [np.zeros((0, 4, 2), np.float32) for _ in images]
        tensors = {i: self.prepare(image) for i, image in enumerate(images)}
        tensors = {i: tensor for i, tensor in tensors.items() if tensor is not None}
        if not tensors:
            return found
        height = max(tensor.shape[2] for tensor in tensors.values())
        width = max(tensor.shape[3] for tensor in tensors.values())
        # Zero is mid-grey after normalisation: the padding reads as a blank margin.
        batch = np.zeros((len(tensors), 3, height, width), np.float32)
        for row, tensor in enumerate(tensors.values()):
            batch[row, :, : tensor.shape[2], : tensor.shape[3]] = tensor[0]
        (maps,) = self.session.run(None, {self.input: batch})
        for row, (index, tensor) in enumerate(tensors.items()):
            own = np.ascontiguousarray(maps[row : row + 1, :, : tensor.shape[2], : tensor.shape[3]])
            boxes, _ = self.boxes_of(own, images[index].shape[:2])
            found[index] = geometry.keep_readable(boxes)
        return found
