"""The emotion network: a compact VGG-style CNN that quantises cleanly to int8."""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from training import EMOTIONS

# float_input = pixel * SCALE + OFFSET maps pixels 0..255 to -1..1.
SCALE = 2.0 / 255.0
OFFSET = -1.0
INPUT_SHAPE = (48, 48, 1)
FEATURES_LAYER = "features"
LOGITS_LAYER = "logits"
SCORES_LAYER = "scores"


def _conv(x, filters: int, name: str):
    # No bias: BatchNorm follows and the converter folds it into the convolution.
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def grid_pool(widths: tuple[int, ...], grid: int) -> int:
    """The pooling window that averages the last stage's map down to ``grid`` × ``grid``."""
    side = INPUT_SHAPE[0] // 2 ** (len(widths) - 1)
    if grid < 1 or side % grid:
        raise ValueError(f"grid {grid} does not divide the last stage's {side}×{side} map")
    return side // grid


def build_model(
    widths: tuple[int, ...] = (32, 64, 128, 256),
    depths: tuple[int, ...] = (2, 2, 2, 2),
    feature_size: int = 128,
    dropout: float = 0.3,
    grid: int = 1,
) -> keras.Model:
    """Stages of 3×3 conv+BN+ReLU (max-pooled between stages), the last stage's map averaged
    over a ``grid`` × ``grid`` grid (1: global average pooling) and flattened, a dense feature
    layer and the classifier; outputs softmax scores over :data:`training.EMOTIONS`.

    A grid keeps where on the face a pattern is (brows above, mouth below), which global
    pooling throws away; its cost is parameters in the feature layer, not time.
    """
    window = grid_pool(widths, grid)
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = inputs
    for stage, (width, depth) in enumerate(zip(widths, depths, strict=True)):
        if stage:
            x = layers.MaxPooling2D(name=f"pool{stage}")(x)
        for i in range(depth):
            x = _conv(x, width, f"s{stage}c{i}")
    if grid == 1:
        x = layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        x = layers.AveragePooling2D(window, name="grid_pool")(x)
        x = layers.Flatten(name="flatten")(x)
    features = layers.Dense(feature_size, activation="relu", name=FEATURES_LAYER)(x)
    x = layers.Dropout(dropout, name="dropout")(features)
    logits = layers.Dense(len(EMOTIONS), name=LOGITS_LAYER)(x)
    scores = layers.Softmax(name=SCORES_LAYER)(logits)
    return keras.Model(inputs, scores, name="emotion")


def model_from_recipe(recipe: dict[str, Any]) -> keras.Model:
    """:func:`build_model` with a training recipe's network keys."""
    return build_model(
        tuple(recipe["widths"]),
        tuple(recipe["depths"]),
        recipe["feature_size"],
        recipe["dropout"],
        recipe["grid"],
    )


def with_features(model: keras.Model) -> keras.Model:
    """The same network with two outputs: ``[scores, features]`` (the calibration's input)."""
    return keras.Model(
        model.inputs,
        [model.get_layer(SCORES_LAYER).output, model.get_layer(FEATURES_LAYER).output],
        name="emotion_with_features",
    )
