"""Cutting the detected lines out of an image and turning those that read upside down.

The angle classifier (PaddleOCR's mobile v2.0 model) gives, for a line, the probabilities that
it reads at 0 and at 180 degrees (``ClsPostProcess``'s labels). It squeezes a long line into
its 192 columns, and then it is sometimes unsure: the package's rule (turn a line when it says
180 with more than ``cls_thresh``, 0.9) left one of the demo's six upside-down lines as
they were. So each line is classified twice, as it is and turned half a turn, one batch for
both, and the line is turned when the classifier finds "upside down as it is, upright when
turned" likelier than the reverse. Of a line and its turned copy exactly one is upright, and
asking about both uses the classifier's evidence from each.
"""

from __future__ import annotations

from typing import List, Tuple

import geometry
import models
import numpy as np
import textlines
from rapidocr_onnxruntime.ch_ppocr_cls.utils import ClsPostProcess

#: The classifier's label for a line that reads upside down.
UPSIDE_DOWN = "180"


class Orienter:
    """Crops every box of an image and sets each line upright."""

    def __init__(self, threads: int) -> None:
        """Open the classifier; lines are kept at the recogniser's height.

        Args:
            threads: onnxruntime intra-op threads.
        """
        config = models.settings()
        cls = config["Cls"]
        self.width = int(cls["cls_image_shape"][2])
        self.labels = ClsPostProcess(cls["label_list"])
        #: Lines are resized to the recogniser's height: both models read 48-pixel lines.
        self.height = int(config["Rec"]["rec_img_shape"][1])
        self.session = models.session("Cls", threads)
        self.input = self.session.get_inputs()[0].name

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> Tuple[List[np.ndarray], List[int]]:
        """The upright line images of ``boxes``, at the models' height, and each one's rotation.

        Args:
            image: ``H x W x 3`` uint8 BGR.
            boxes: float32 ``n x 4 x 2`` corners in the image's pixels.

        Returns:
            uint8 ``height x w x 3`` lines (their widths differ), and 0 or 180 for each.
        """
        lines = [textlines.to_height(geometry.crop(image, box), self.height) for box in boxes]
        angles = [0] * len(lines)
        if not lines:
            return lines, angles
        turned = [np.ascontiguousarray(line[::-1, ::-1]) for line in lines]
        batch = textlines.classifier_batch(lines + turned, self.width)
        (probabilities,) = self.session.run(None, {self.input: batch})
        upside_down = probabilities[:, self.labels.label_list.index(UPSIDE_DOWN)]
        for index in range(len(lines)):
            as_is, flipped = upside_down[index], upside_down[len(lines) + index]
            # P(this is upside down) * P(its turn is upright) against the reverse.
            if as_is * (1.0 - flipped) > (1.0 - as_is) * flipped:
                lines[index] = turned[index]
                angles[index] = 180
        return lines, angles
