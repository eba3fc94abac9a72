"""Text recognition over every line of a batch of requests: the CRNN and its CTC decoding.

The lines of all requests are pooled and sorted by width, so lines of similar length share a
model call (less padding), in calls of up to :data:`LINES_PER_CALL` lines. ``CTCLabelDecode``
(the package's decoder, over the character list in the model's metadata) turns each line's
per-column probabilities into text and a confidence: the mean probability of its characters.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import models
import numpy as np
import textlines
from rapidocr_onnxruntime.ch_ppocr_rec.utils import CTCLabelDecode

#: Lines per model call; more buys nothing on a CPU and costs memory on long lines.
LINES_PER_CALL = 16


class Recogniser:
    """Reads text lines, pooled across requests."""

    def __init__(self, threads: int) -> None:
        """Open the model and its decoder.

        Args:
            threads: onnxruntime intra-op threads.
        """
        self.session = models.session("Rec", threads)
        self.input = self.session.get_inputs()[0].name
        self.decode = CTCLabelDecode(character=models.characters(self.session))
        self.min_width = int(models.settings()["Rec"]["rec_img_shape"][2])

    def __call__(self, lines: Sequence[np.ndarray]) -> List[Tuple[str, float]]:
        """The text and confidence of each line (uint8 ``48 x w x 3`` BGR), in input order."""
        read: List[Tuple[str, float]] = [("", 0.0)] * len(lines)
        by_width = sorted(range(len(lines)), key=lambda i: lines[i].shape[1])
        for start in range(0, len(by_width), LINES_PER_CALL):
            chunk = by_width[start : start + LINES_PER_CALL]
            batch = textlines.recogniser_batch([lines[i] for i in chunk], self.min_width)
            (probabilities,) = self.session.run(None, {self.input: batch})
            for index, (text, confidence) in zip(chunk, self.decode(probabilities)):
                read[index] = (text, float(confidence))
        return read
