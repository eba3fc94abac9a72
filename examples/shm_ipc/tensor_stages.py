"""What both ``shm_ipc`` pipelines compute; the two scripts differ only in how tensors travel.

A request ``{"size": 1024, "seed": 7}`` asks for a synthetic RGB image of ``size`` x ``size``
pixels. The first stage "decodes" it (seeded random pixels stand in for a decoder) and
normalises it into a float32 tensor of shape ``(3, size, size)``: 12 MiB at 1024, the size the
data-plane benchmark moves. The second stage reduces the tensor to what a client can check:
per-channel means and a checksum of its bytes.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from mosec import ValidationError

#: ImageNet's per-channel mean and standard deviation, the usual normalisation.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)
MAX_SIZE = 2048


def parse(request: Any) -> tuple[int, int]:
    """The image size and seed of a request.

    Raises:
        ValidationError: when the size is not an integer from 1 to 2048 (422).
    """
    size = request.get("size", 1024) if isinstance(request, dict) else None
    if not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
        raise ValidationError(f"size must be an integer from 1 to {MAX_SIZE}, got {size!r}")
    return size, int(request.get("seed", 0))


def tensor_shape(size: int) -> tuple[int, int, int]:
    """The shape of the tensor for an image of ``size`` x ``size``."""
    return (3, size, size)


def normalise_into(out: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Write the normalised tensor of the requested image into ``out``; returns ``out``."""
    pixels = np.random.default_rng(seed).integers(0, 256, tensor_shape(size), dtype=np.uint8)
    np.divide(pixels, np.float32(255), out=out)
    out -= MEAN
    out /= STD
    return out


def summarize(tensor: np.ndarray) -> dict[str, Any]:
    """What the client gets back about the tensor the second stage received."""
    return {
        "shape": list(tensor.shape),
        "dtype": str(tensor.dtype),
        "channel_means": [round(float(m), 6) for m in tensor.mean(axis=(1, 2))],
        "sha256": hashlib.sha256(np.ascontiguousarray(tensor)).hexdigest(),
    }
