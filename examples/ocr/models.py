"""PaddleOCR's PP-OCRv4 models and settings, as shipped inside the rapidocr-onnxruntime wheel.

The wheel (Apache-2.0) carries three ONNX files (about 15 MB) and a ``config.yaml`` with the
pre- and post-processing settings PaddleOCR uses for them; nothing is downloaded at run time.
This module finds them and opens onnxruntime sessions with the thread count the stage asks for
(the package's own session class takes every core, which is wrong when several stages share
them).

- ``Det``: PP-OCRv4 text detection, a DB (differentiable binarisation) segmentation network;
- ``Cls``: the mobile v2.0 text-line angle classifier (0 or 180 degrees);
- ``Rec``: PP-OCRv4 text recognition, a CRNN with CTC output over the 6,623 characters listed
  in the model's own metadata (Chinese, Latin letters, digits, punctuation).
"""

from __future__ import annotations

import importlib.metadata
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List

#: The distribution and the version the pipeline is written and measured against.
DISTRIBUTION = "rapidocr-onnxruntime"
VERSION = "1.4.4"
#: onnxruntime intra-op threads of each model session (``OCR_THREADS`` overrides it).
THREADS_ENV = "OCR_THREADS"


def check_version() -> None:
    """Fail early, naming the pin, when another version of the package is installed.

    Raises:
        RuntimeError: the installed version is not :data:`VERSION`.
    """
    try:
        installed = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed != VERSION:
        raise RuntimeError(
            f"the OCR pipeline needs {DISTRIBUTION}=={VERSION} (found {installed}): "
            "pip install -e '.[demo]'"
        )


@lru_cache(maxsize=1)
def package_dir() -> Path:
    """The installed ``rapidocr_onnxruntime`` package folder."""
    check_version()
    import rapidocr_onnxruntime

    return Path(rapidocr_onnxruntime.__file__).resolve().parent


@lru_cache(maxsize=1)
def settings() -> Dict[str, Dict[str, Any]]:
    """The package's ``config.yaml``: sections ``Global``, ``Det``, ``Cls`` and ``Rec``."""
    from rapidocr_onnxruntime.utils import read_yaml

    return read_yaml(package_dir() / "config.yaml")


def model_path(section: str) -> Path:
    """The ONNX file of ``Det``, ``Cls`` or ``Rec``."""
    return package_dir() / settings()[section]["model_path"]


def threads(default: int = 2) -> int:
    """Intra-op threads for a session: ``OCR_THREADS``, else ``default`` (at most the cores)."""
    value = os.environ.get(THREADS_ENV)
    count = int(value) if value else default
    return max(1, min(count, os.cpu_count() or 1))


def session(section: str, intra_threads: int) -> Any:
    """An onnxruntime CPU session of one of the models.

    Args:
        section: ``Det``, ``Cls`` or ``Rec``.
        intra_threads: threads for one operator (keep it small: stages share the cores).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    # onnxruntime's threads spin while waiting for work by default: with several stages on
    # the same few cores, that spinning takes the cores the other stages need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        str(model_path(section)), options, providers=["CPUExecutionProvider"]
    )


def characters(rec_session: Any) -> List[str]:
    """The recognition model's character list, from its own metadata (one character a line)."""
    return rec_session.get_modelmeta().custom_metadata_map["character"].splitlines()
