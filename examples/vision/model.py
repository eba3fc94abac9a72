"""A small convolutional classifier built in code with the ``onnx`` helpers.

The model is **untrained**: its weights come from a numpy RNG with a fixed seed, so its
predictions are arbitrary but the same on every run and machine (up to float rounding). It
exists to give the demo pipeline real convolutional work of a realistic shape, not answers.

Graph (input ``image``: float32 ``N x 3 x 224 x 224``, normalised; output ``probabilities``:
float32 ``N x len(labels)``)::

    Conv 3->16 k3 s2 -> Relu -> Conv 16->32 k3 s2 -> Relu -> Conv 32->64 k3 s2 -> Relu
    -> GlobalAveragePool -> Flatten -> Gemm 64->classes -> Softmax

It is built in a few milliseconds, so each inference worker builds it when it starts and hands
the serialized bytes to onnxruntime: no file is written anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Side of the square input images, in pixels.
IMAGE_SIZE = 224
#: The input tensor of one image: channels, height, width.
INPUT_SHAPE = (3, IMAGE_SIZE, IMAGE_SIZE)
#: Seed of the weights: change it and every prediction changes.
SEED = 7
#: Channels of the three convolutions.
CHANNELS = (16, 32, 64)
#: ONNX opset the graph is written for (onnxruntime >= 1.14 runs it).
OPSET = 17
#: Our own short list of class names, one a line.
LABELS_FILE = Path(__file__).resolve().parent / "labels.txt"


def load_labels(path: Path = LABELS_FILE) -> list[str]:
    """The class names, in output order.

    Args:
        path: a text file with one name a line (blank lines are skipped).
    """
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """Weights with He scaling, so activations neither vanish nor blow up through the ReLUs."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def build_model(num_classes: int, seed: int = SEED) -> onnx.ModelProto:
    """Build the untrained classifier.

    Args:
        num_classes: width of the output.
        seed: seed of the numpy RNG the weights come from.

    Returns:
        A model that passes ``onnx.checker.check_model``, with a dynamic batch dimension.
    """
    rng = np.random.default_rng(seed)
    nodes = []
    weights = []
    previous, channels_in = "image", INPUT_SHAPE[0]
    for index, channels_out in enumerate(CHANNELS):
        w, b = f"conv{index}.w", f"conv{index}.b"
        fan_in = channels_in * 3 * 3
        weights.append(
            numpy_helper.from_array(_he_normal(rng, (channels_out, channels_in, 3, 3), fan_in), w)
        )
        weights.append(numpy_helper.from_array(np.full(channels_out, 0.01, np.float32), b))
        conv, relu = f"conv{index}", f"relu{index}"
        nodes.append(
            helper.make_node(
                "Conv",
                [previous, w, b],
                [conv],
                kernel_shape=[3, 3],
                strides=[2, 2],
                pads=[1, 1, 1, 1],
            )
        )
        nodes.append(helper.make_node("Relu", [conv], [relu]))
        previous, channels_in = relu, channels_out
    # A larger scale on the classifier makes the softmax less flat, so the top-3 differ visibly.
    fc_w = _he_normal(rng, (channels_in, num_classes), channels_in) * 4.0
    # Pooled ReLU features share a large positive common part; weights that sum to zero over
    # the features ignore it, so different images get different top classes.
    fc_w -= fc_w.mean(axis=0, keepdims=True)
    weights.append(numpy_helper.from_array(fc_w, "fc.w"))
    weights.append(numpy_helper.from_array(np.zeros(num_classes, np.float32), "fc.b"))
    nodes += [
        helper.make_node("GlobalAveragePool", [previous], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "fc.w", "fc.b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "untrained_convnet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", *INPUT_SHAPE])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", num_classes])],
        initializer=weights,
    )
    model = helper.make_model(
        graph,
        producer_name="mosec-demo",
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string="UNTRAINED: fixed-seed random weights; predictions are arbitrary.",
    )
    model.ir_version = 8  # what onnxruntime >= 1.14 accepts, whatever onnx version built it
    onnx.checker.check_model(model)
    return model


def make_session(model: onnx.ModelProto, threads: int = 1) -> Any:
    """An onnxruntime CPU session running ``model`` from memory (no file).

    Args:
        model: the model, e.g. from :func:`build_model`.
        threads: intra-op threads; keep it small when other stages share the cores.
    """
    import onnxruntime as ort  # only the inference stage needs it

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
