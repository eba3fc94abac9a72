"""The README's demo (the OCR pipeline) runs end to end; the vision example classifies.

The vision example's model builder makes a valid, deterministic model.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import re
import subprocess
import sys
from types import ModuleType

import numpy as np
from server_util import EXAMPLES, REPO, StartServer, server_env

VISION = EXAMPLES / "vision"


def load(name: str) -> ModuleType:
    """Import ``examples/vision/<name>.py`` under a name no other test uses."""
    spec = importlib.util.spec_from_file_location(f"vision_{name}", VISION / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_demo_reads_its_pictures_and_reports() -> None:
    # The README's demo (examples/demo.py, the OCR pipeline) on its small set, one round.
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py"), "--scenes", "small", "--rounds", "1"],
        cwd=REPO,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for name in ("small-astronaut", "small-coffee", "small-rocket"):
        assert re.search(rf"^  {name} .* character accuracy +\d+\.\d%$", out, re.M), out
    assert "      expected  Upside down / Batch of lines" in out
    assert re.search(r"^character accuracy over all 3 readings: \d+\.\d%$", out, re.M), out
    assert re.search(r"^throughput: 3 requests in \S+ s = \S+ req/s", out, re.M), out
    for stage in ("Detect_2", "Recognize_4"):
        assert re.search(rf"^batch sizes at {stage} \(from /metrics\): 1: \d+", out, re.M), out
    assert re.search(r"^arena: [1-9][\d.]* MiB passed between stages by reference", out, re.M)
    assert "server stopped with exit code 0; arena files left: 0" in out.splitlines()


def test_vision_pipeline_classifies_the_samples(start_server: StartServer) -> None:
    # The untrained classifier pipeline (examples/vision), kept as an example.
    server = start_server(VISION / "pipeline.py", "--shm-size", "64M")
    samples = load("images").sample_images()
    bodies = [image.body for image in samples] * 2
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda body: server.post(content=body), bodies))
    assert [r.status_code for r in answers] == [200] * len(bodies), [r.text for r in answers]
    tops = [r.json()["top"] for r in answers]
    for top in tops:
        assert len(top) == 3 and all(0.0 <= c["probability"] <= 1.0 for c in top), top
    # Deterministic whatever the batch an image landed in.
    for first, second in zip(tops[: len(samples)], tops[len(samples) :]):
        assert [c["label"] for c in first] == [c["label"] for c in second]
    assert server.metric("mosec_service_batch_size_count", stage="Inference_3") > 0
    assert server.post(content=b"not an image").status_code == 400


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
