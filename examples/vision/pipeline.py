"""An image classification pipeline whose tensors travel through the shared-memory arena.

Four stages, each a :class:`~mosec.mixin.ShmIPCMixin` worker, so every image and tensor moves
between processes as a 32-byte reference into the arena instead of a pickle:

1. ``Decode``: the request body is a JPEG or PNG file; it becomes an ``H x W x 3`` uint8 array
   written into an arena array from ``shm_empty``.
2. ``Preprocess``: centre square crop, bilinear resize to 224 x 224 and ImageNet mean/std
   normalisation, written in place into a float32 ``3 x 224 x 224`` arena array.
3. ``Inference``: batches of up to 8 tensors through a small convolutional model run by
   onnxruntime. The model is UNTRAINED (fixed-seed random weights, see ``model.py``): its
   predictions are arbitrary but deterministic. Each worker builds it in memory when it starts
   (a few milliseconds); nothing is downloaded or written to disk.
4. ``Postprocess``: the top 3 classes as JSON.

Run the server (``--shm-size`` sizes the arena; 64M is plenty here)::

    python examples/vision/pipeline.py --port 8000 --shm-size 64M

and classify an image from another shell::

    curl -X POST http://127.0.0.1:8000/inference --data-binary @cat.jpg

The answer looks like ``{"top": [{"label": "tabby cat", "probability": 0.73}, ...]}``. A body
that is not a JPEG or PNG image gets 400. ``python examples/demo.py`` runs all of this for you.
"""

from __future__ import annotations

import io

import numpy as np
from model import INPUT_SHAPE, build_model, load_labels, make_session
from PIL import Image, UnidentifiedImageError

from mosec import ClientError, Server, Worker, get_logger
from mosec.mixin import ShmIPCMixin

logger = get_logger("vision")

#: Classes in the answer.
TOP_K = 3
#: The largest batch the inference stage takes, and how long it waits to fill one (ms).
MAX_BATCH_SIZE = 8
MAX_WAIT_MS = 20
#: ImageNet channel statistics, scaled to 0..255 pixels and shaped to broadcast over CHW.
MEAN = (np.array([0.485, 0.456, 0.406], np.float32) * 255).reshape(3, 1, 1)
INV_STD = (1 / (np.array([0.229, 0.224, 0.225], np.float32) * 255)).reshape(3, 1, 1)
#: Image formats the decoder accepts.
FORMATS = ("JPEG", "PNG")


class Decode(ShmIPCMixin, Worker):
    """Stage 1: JPEG or PNG bytes to an RGB uint8 array in the arena."""

    req_mime_type = "application/octet-stream"

    def deserialize(self, data: bytes) -> bytes:
        """The request body is the image file itself: keep its bytes."""
        return data

    def forward(self, data: bytes) -> np.ndarray:
        """Decode one image (grey, palette and alpha images become RGB).

        Raises:
            ClientError: the body is not a JPEG or PNG image (400).
        """
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in FORMATS:
                    raise ClientError(f"expected a JPEG or PNG image, got {image.format}")
                rgb = image.convert("RGB")
        except UnidentifiedImageError as err:
            raise ClientError("expected a JPEG or PNG image") from err
        except OSError as err:  # a truncated or corrupt file
            raise ClientError(f"the image cannot be decoded: {err}") from err
        pixels = self.shm_empty((rgb.height, rgb.width, 3), np.uint8)
        pixels[...] = np.asarray(rgb)
        return pixels


class Preprocess(ShmIPCMixin, Worker):
    """Stage 2: crop, resize and normalise into a float32 CHW tensor written in place."""

    def forward(self, pixels: np.ndarray) -> np.ndarray:
        """Make the model's input from one decoded image (a read-only arena view)."""
        height, width = pixels.shape[:2]
        side = min(height, width)
        left, top = (width - side) / 2, (height - side) / 2
        small = Image.fromarray(pixels).resize(
            INPUT_SHAPE[1:], Image.Resampling.BILINEAR, box=(left, top, left + side, top + side)
        )
        tensor = self.shm_empty(INPUT_SHAPE, np.float32)
        np.subtract(np.asarray(small).transpose(2, 0, 1), MEAN, out=tensor)
        np.multiply(tensor, INV_STD, out=tensor)
        return tensor


class Inference(ShmIPCMixin, Worker):
    """Stage 3: the untrained convolutional model, on batches of up to 8 tensors."""

    def __init__(self) -> None:
        """Build the model in memory and run it once, so the first batch is not slow."""
        super().__init__()
        self.session = make_session(build_model(len(load_labels())))
        self.session.run(None, {"image": np.zeros((1, *INPUT_SHAPE), np.float32)})

    def forward(self, tensors: list[np.ndarray]) -> list[np.ndarray]:
        """Class probabilities for each tensor of the batch."""
        logger.debug("batch of %d", len(tensors))
        (probabilities,) = self.session.run(["probabilities"], {"image": np.stack(tensors)})
        return list(probabilities)


class Postprocess(ShmIPCMixin, Worker):
    """Stage 4: the top classes of one image, as JSON."""

    def __init__(self) -> None:
        """Read the class names."""
        super().__init__()
        self.labels = load_labels()

    def forward(self, probabilities: np.ndarray) -> dict:
        """The ``TOP_K`` most probable classes, most probable first."""
        best = np.argsort(-probabilities, kind="stable")[:TOP_K]
        return {
            "top": [
                {"label": self.labels[i], "probability": round(float(probabilities[i]), 4)}
                for i in best
            ]
        }


if __name__ == "__main__":
    server = Server()
    server.append_worker(Decode)
    server.append_worker(Preprocess)
    server.append_worker(Inference, max_batch_size=MAX_BATCH_SIZE, max_wait_time=MAX_WAIT_MS)
    server.append_worker(Postprocess)
    server.run()
