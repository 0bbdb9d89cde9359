"""Rebuild a trainable Keras checkpoint from an exported int8 model:
``python -m training.from_tflite --model models/emotion_int8.tflite --data DIR --out C.keras``.

The checkpoints of the shipped model are not in the repository (``runs/`` is git-ignored), but
its weights are in the ``.tflite``: per-channel int8 kernels with each BatchNorm folded into its
convolution and int32 biases. Dequantised, they give the float network to within int8 rounding.
A BatchNorm cannot be put back as it was; each is set so that it passes its convolution's
output through plus the folded bias: exactly in inference, and in training mode up to the
difference between a batch's statistics and those of the real faces its moving statistics are
measured on (its scale undoes them). A warm start (``training.train --init``) then begins from
the shipped model's function; the first epoch re-learns what a batch of augmented faces shifts.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _dequantized(interpreter, detail: dict) -> np.ndarray:
    raw = interpreter.get_tensor(detail["index"]).astype(np.float32)
    q = detail["quantization_parameters"]
    scales, zero_points = q["scales"], q["zero_points"]
    if len(scales) == 0:
        return raw
    axis = q["quantized_dimension"]
    shape = [1] * raw.ndim
    shape[axis] = -1
    return (raw - zero_points.reshape(shape)) * scales.reshape(shape)


def tflite_weights(path: Path | str) -> dict[str, np.ndarray]:
    """``{layer: kernel}`` and ``{layer + "/bias": bias}`` of every conv and dense layer, in
    Keras layouts, read from the tensors the converter named after the Keras layers."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    details = interpreter.get_tensor_details()
    weights: dict[str, np.ndarray] = {}
    for op in interpreter._get_ops_details():  # private, but the only way to the op graph
        if op["op_name"] not in ("CONV_2D", "FULLY_CONNECTED"):
            continue
        kernel_d, bias_d = details[op["inputs"][1]], details[op["inputs"][2]]
        kernel, bias = _dequantized(interpreter, kernel_d), _dequantized(interpreter, bias_d)
        name = kernel_d["name"].split("/")[1].rsplit("_", 1)[0]  # e.g. "s1c0_conv"
        if op["op_name"] == "CONV_2D":
            weights[name] = kernel.transpose(1, 2, 3, 0)  # [out, h, w, in] -> [h, w, in, out]
        else:
            weights[name] = kernel.T  # [out, in] -> [in, out]
        weights[name + "/bias"] = bias
    return weights


def rebuild(tflite: Path | str, recipe: dict, images: np.ndarray):
    """The Keras network of ``recipe`` holding the weights of ``tflite``; ``images`` (uint8
    faces, a few thousand) set each BatchNorm's statistics."""
    import keras

    from training.model import OFFSET, SCALE, model_from_recipe

    weights = tflite_weights(tflite)
    model = model_from_recipe(recipe)
    x = images[..., None].astype(np.float32) * SCALE + OFFSET
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([weights[layer.name]])
        elif isinstance(layer, keras.layers.Dense):
            layer.set_weights([weights[layer.name], weights[layer.name + "/bias"]])
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        conv = layer.name.replace("_bn", "_conv")
        # Layers before this one are final, so its input statistics are those of the network.
        out = keras.Model(model.inputs, model.get_layer(conv).output).predict(
            x, batch_size=256, verbose=0
        )
        mean = out.mean(axis=(0, 1, 2))
        var = out.var(axis=(0, 1, 2))
        gamma = np.sqrt(var + layer.epsilon)
        layer.set_weights([gamma, mean + weights[conv + "/bias"], mean, var])
    return model


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path, help="the .tflite (its .json beside it)")
    p.add_argument("--data", required=True, type=Path, help="Kaggle root: its train split")
    p.add_argument("--out", required=True, type=Path, help="the .keras checkpoint to write")
    p.add_argument("--images", type=int, default=4000, help="faces for the BatchNorm statistics")
    args = p.parse_args(argv)

    from training.data import load_split, stratified_split
    from training.train import RECIPE_DEFAULTS

    meta = json.loads(args.model.with_suffix(".json").read_text())
    recipe = {**RECIPE_DEFAULTS, **meta["recipe"]}
    train = load_split(args.data, "train")
    _, sample = stratified_split(train.labels, args.images / len(train.labels), recipe["seed"])
    model = rebuild(args.model, recipe, train.images[sample])
    model.compile(loss="categorical_crossentropy")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
