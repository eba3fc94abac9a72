"""An OCR service: PaddleOCR's PP-OCRv4 models in five mosec stages, tensors through the arena.

The models are trained ones, shipped as ONNX files inside the ``rapidocr-onnxruntime`` wheel
(see ``models.py``); the package's documented pre- and post-processing is used as a library,
and the serving stages are this file's:

1. ``Decode``: the request body, a JPEG or PNG file, becomes a BGR array at most 2,000 pixels
   on its longer side. Decoding happens per request in ``deserialize``, so a corrupt file is a
   400 for its own request only.
2. ``Detect``: the DB text detector, batched across requests (up to ``DETECT_BATCH`` images,
   padded to the largest, see ``detection.py``).
3. ``Orient``: each detected box is cut out (a perspective warp of its quadrilateral), resized to
   the models' 48-pixel line height, and the angle classifier turns lines that read upside down.
   A plain stage: one request at a time.
4. ``Recognize``: the CRNN recogniser, batched across requests: the lines of every request in
   the batch window are pooled, sorted by width and read together (``recognition.py``).
5. ``Answer``: JSON with each line's text, confidence and box (corners in the request image's
   pixels), in reading order, and the whole text.

Every stage output is one uint8 array (``bundle.py``), so the file runs unchanged with the
shared-memory arena (``ShmIPCMixin``, the default; stages then write their outputs in place
with ``self.shm_empty``), with pickle, or with ``NumBinIPCMixin``, on this package and on
upstream mosec 0.9.8 alike: ``OCR_IPC`` and ``OCR_INPLACE`` choose (see ``ipc.py``).

Run the server from the repository root (``--timeout`` in ms: a 12-megapixel photo with
queueing on two cores takes seconds)::

    python examples/ocr/pipeline.py --port 8000 --timeout 60000

and read an image from another shell::

    curl -X POST http://127.0.0.1:8000/inference --data-binary @receipt.jpg

The answer looks like ``{"width": 1600, "height": 1200, "text": "TOTAL 12.50", "lines":
[{"text": "TOTAL 12.50", "confidence": 0.9871, "box": [[112, 80], [590, 80], [590, 131],
[112, 131]]}]}``. ``python examples/demo.py`` (``make demo``) renders test images with known
text, reads them through this pipeline and prints the accuracy.
"""

from __future__ import annotations

from typing import Any, List

import bundle
import decoding
import geometry
import ipc
import models
import numpy as np

from mosec import Server, get_logger

logger = get_logger()

#: The stage classes' bases: the IPC mixin chosen by ``OCR_IPC``, then ``Worker``.
BASES = ipc.bases()
#: Batching of the detector: images per batch and how long to wait for them (ms).
DETECT_BATCH = 4
DETECT_WAIT_MS = 20
#: Batching of the recogniser: requests per batch (each with all its lines), and the wait (ms).
RECOGNIZE_BATCH = 8
RECOGNIZE_WAIT_MS = 20
#: Processes of the decoding stage: JPEG decoding is the other large per-request cost.
DECODERS = 2


class Decode(*BASES):  # type: ignore[misc]
    """Stage 1: a JPEG or PNG file to a BGR array (and its original size) in one bundle."""

    req_mime_type = "application/octet-stream"

    def __init__(self) -> None:
        """Read the longest side the pipeline works at from the package's settings."""
        super().__init__()
        self.max_side = int(models.settings()["Global"]["max_side_len"])

    def deserialize(self, data: bytes) -> decoding.Decoded:
        """Decode the request body, per request (a corrupt file fails only its own request).

        Raises:
            DecodingError: not a JPEG or PNG image, corrupt, or of an unusable size (400).
        """
        return decoding.decode(data, self.max_side)

    def forward(self, data: decoding.Decoded) -> np.ndarray:
        """Write the pixels, as BGR (the models' channel order), into the stage's output."""
        height, width = data.pixels.shape[:2]
        out, views = bundle.allocate(
            {"image": ((height, width, 3), np.uint8), "size": ((2,), np.int32)},
            ipc.allocator(self),
        )
        np.copyto(views["image"], data.pixels[:, :, ::-1])
        views["size"][:] = data.size
        return out


class Detect(*BASES):  # type: ignore[misc]
    """Stage 2: text boxes of a batch of images, one detector call per batch."""

    def __init__(self) -> None:
        """Open the detector; warm up on a blank image."""
        super().__init__()
        # Imported here: only the stage's own processes need the model code (and OpenCV).
        from detection import Detector

        self.detector = Detector(models.threads())
        blank = np.full((320, 320, 3), 255, np.uint8)
        self.example = [bundle.pack({"image": blank, "size": np.array([320, 320], np.int32)})]

    def forward(self, data: List[np.ndarray]) -> List[np.ndarray]:
        """The image and its boxes, per request."""
        items = [bundle.unpack(item) for item in data]
        found = self.detector([item["image"] for item in items])
        logger.debug("detected %s boxes in a batch of %d", [len(b) for b in found], len(items))
        empty = ipc.allocator(self)
        return [bundle.pack({**item, "boxes": boxes}, empty) for item, boxes in zip(items, found)]


class Orient(*BASES):  # type: ignore[misc]
    """Stage 3: crop each box and set it upright; the lines leave at the models' height."""

    def __init__(self) -> None:
        """Open the angle classifier; warm up on one box."""
        super().__init__()
        from orientation import Orienter

        self.orienter = Orienter(models.threads(1))
        box = np.array([[[10, 10], [200, 10], [200, 50], [10, 50]]], np.float32)
        # ``multi_examples``, not ``example``: upstream mosec tests ``example`` for truth,
        # which an array does not have.
        self.multi_examples = [
            bundle.pack(
                {
                    "image": np.full((64, 256, 3), 255, np.uint8),
                    "size": np.array([256, 64], np.int32),
                    "boxes": box,
                }
            )
        ]

    def forward(self, data: np.ndarray) -> np.ndarray:
        """The lines of one request (padded to the widest), their widths, boxes and size."""
        item = bundle.unpack(data)
        lines, _ = self.orienter(item["image"], item["boxes"])
        height = self.orienter.height
        widest = max((line.shape[1] for line in lines), default=1)
        out, views = bundle.allocate(
            {
                "lines": ((len(lines), height, widest, 3), np.uint8),
                "widths": ((len(lines),), np.int32),
                "boxes": (item["boxes"].shape, np.float32),
                "scale": ((2,), np.float32),
                "size": ((2,), np.int32),
            },
            ipc.allocator(self),
        )
        for index, line in enumerate(lines):
            # Only the first ``widths[i]`` columns are read: the padding is left as it is.
            views["lines"][index, :, : line.shape[1]] = line
            views["widths"][index] = line.shape[1]
        views["boxes"][...] = item["boxes"]
        image_height, image_width = item["image"].shape[:2]
        views["scale"][:] = item["size"] / np.array([image_width, image_height], np.float32)
        views["size"][:] = item["size"]
        return out


class Recognize(*BASES):  # type: ignore[misc]
    """Stage 4: read every line of every request of the batch, pooled."""

    def __init__(self) -> None:
        """Open the recogniser; warm up on a blank line."""
        super().__init__()
        from recognition import Recogniser

        self.recogniser = Recogniser(models.threads())
        self.example = [
            bundle.pack(
                {
                    "lines": np.full((1, 48, 320, 3), 255, np.uint8),
                    "widths": np.array([320], np.int32),
                    "boxes": np.zeros((1, 4, 2), np.float32),
                    "scale": np.ones(2, np.float32),
                    "size": np.array([320, 48], np.int32),
                }
            )
        ]

    def forward(self, data: List[np.ndarray]) -> List[np.ndarray]:
        """Texts (UTF-8, one after the other), confidences, boxes and scale, per request."""
        items = [bundle.unpack(item) for item in data]
        owners = [(r, i) for r, item in enumerate(items) for i in range(len(item["widths"]))]
        lines = [items[r]["lines"][i, :, : items[r]["widths"][i]] for r, i in owners]
        read = self.recogniser(lines) if lines else []
        logger.debug("read %d lines of %d requests", len(lines), len(items))
        empty = ipc.allocator(self)
        outputs = []
        for r, item in enumerate(items):
            mine = [read[k] for k, (owner, _) in enumerate(owners) if owner == r]
            encoded = [text.encode() for text, _ in mine]
            outputs.append(
                bundle.pack(
                    {
                        "text": np.frombuffer(b"".join(encoded), np.uint8),
                        "ends": np.cumsum([len(e) for e in encoded], dtype=np.int32),
                        "confidences": np.array([c for _, c in mine], np.float32),
                        "boxes": item["boxes"],
                        "scale": item["scale"],
                        "size": item["size"],
                    },
                    empty,
                )
            )
        return outputs


class Answer(*BASES):  # type: ignore[misc]
    """Stage 5: the lines that read confidently, in reading order, as JSON."""

    def __init__(self) -> None:
        """Read the package's confidence threshold (``Global.text_score``)."""
        super().__init__()
        self.min_confidence = float(models.settings()["Global"]["text_score"])

    def forward(self, data: np.ndarray) -> dict[str, Any]:
        """The answer to one request."""
        item = bundle.unpack(data)
        raw = item["text"].tobytes()
        starts = [0, *item["ends"][:-1].tolist()]
        texts = [raw[a:b].decode() for a, b in zip(starts, item["ends"].tolist())]
        boxes = item["boxes"] * item["scale"]  # back to the pixels of the image as sent
        kept = [
            i
            for i, (text, confidence) in enumerate(zip(texts, item["confidences"].tolist()))
            if text.strip() and confidence >= self.min_confidence
        ]
        order = [kept[i] for i in geometry.reading_order([boxes[i] for i in kept])]
        lines = [
            {
                "text": texts[i],
                "confidence": round(float(item["confidences"][i]), 4),
                "box": np.rint(boxes[i]).astype(int).tolist(),
            }
            for i in order
        ]
        width, height = item["size"].tolist()
        return {
            "width": width,
            "height": height,
            "text": "\n".join(line["text"] for line in lines),
            "lines": lines,
        }


def build(server: Any) -> None:
    """Append the five stages to ``server`` (the benchmark's server script calls this too)."""
    server.append_worker(Decode, num=DECODERS)
    server.append_worker(Detect, max_batch_size=DETECT_BATCH, max_wait_time=DETECT_WAIT_MS)
    server.append_worker(Orient)
    server.append_worker(Recognize, max_batch_size=RECOGNIZE_BATCH, max_wait_time=RECOGNIZE_WAIT_MS)
    server.append_worker(Answer)


if __name__ == "__main__":
    ocr_server = Server()
    build(ocr_server)
    ocr_server.run()
