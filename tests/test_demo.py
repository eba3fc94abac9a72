"""The README's demo runs end to end, and its model builder makes a valid, deterministic model."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from types import ModuleType

import numpy as np
from server_util import EXAMPLES, REPO, server_env

VISION = EXAMPLES / "vision"


def load(name: str) -> ModuleType:
    """Import ``examples/vision/<name>.py`` under a name no other test uses."""
    spec = importlib.util.spec_from_file_location(f"vision_{name}", VISION / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_demo_prints_predictions_and_throughput() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        cwd=REPO,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for name, image_format in load("images").SAMPLES:
        filename = f"{name}.{'jpg' if image_format == 'JPEG' else 'png'}"
        found = [line for line in lines if line.split()[:1] == [filename]]
        assert len(found) == 1, result.stdout
        assert re.search(r"-> [^,]+ \d+\.\d%, [^,]+ \d+\.\d%, [^,]+ \d+\.\d%$", found[0]), found[0]
    throughput = r"throughput: \d+ requests in \S+ s = \S+ req/s"
    assert any(re.match(throughput, line) for line in lines), result.stdout
    assert re.search(r"^batch sizes at Inference_3 \(from /metrics\): 1: \d+", result.stdout, re.M)
    assert "server stopped with exit code 0; arena files left: 0" in lines


def run_model(model: object, images: np.ndarray) -> np.ndarray:
    """The model's probabilities for a batch, from a fresh onnxruntime session."""
    session = load("model").make_session(model)
    (probabilities,) = session.run(["probabilities"], {"image": images})
    return np.asarray(probabilities)


def test_model_is_valid_and_deterministic() -> None:
    import onnx

    vision_model = load("model")
    classes = len(vision_model.load_labels())
    model = vision_model.build_model(classes)
    onnx.checker.check_model(model, full_check=True)
    assert model.SerializeToString() == vision_model.build_model(classes).SerializeToString()

    images = np.random.default_rng(0).standard_normal((3, *vision_model.INPUT_SHAPE), np.float32)
    first = run_model(model, images)
    assert first.shape == (3, classes)
    np.testing.assert_allclose(first.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(first, run_model(vision_model.build_model(classes), images))
    # The answer for an image does not depend on the batch it came in.
    np.testing.assert_allclose(run_model(model, images[1:2])[0], first[1], rtol=1e-5, atol=1e-7)
    # The seed is what fixes the weights.
    assert not np.allclose(first, run_model(vision_model.build_model(classes, seed=1), images))
