"""tf.data input pipelines: seeded, resumable batches with on-the-fly augmentation."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from training.model import OFFSET, SCALE

SIZE = 48
CENTER = (SIZE - 1) / 2.0


def normalize(pixels: tf.Tensor) -> tf.Tensor:
    return tf.cast(pixels, tf.float32) * SCALE + OFFSET


def augment(images: tf.Tensor, seed: tf.Tensor, noise: float = 0.0) -> tf.Tensor:
    """Augment a batch of ``[B, 48, 48, 1]`` float pixels (0..255), deterministically per seed.

    One projective warp does the flip, the ±10° rotation, a ±10 % zoom and the ±4 px shift
    (a random crop of the image padded by 4 with black); then brightness/contrast jitter,
    with ``noise`` > 0 sensor noise on half the faces (Gaussian, a standard deviation drawn
    from 0..``noise`` grey levels: a camera in dim light), and random erasing (p=0.5, 2–25 %
    of the area, filled with a random grey level).
    """
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, num=10)

    def uniform(i, lo, hi, shape=None):
        return tf.random.stateless_uniform(
            shape if shape is not None else [batch], seeds[i], minval=lo, maxval=hi
        )

    flip = tf.where(uniform(0, 0.0, 1.0) < 0.5, -1.0, 1.0)
    angle = uniform(1, -math.pi / 18, math.pi / 18)
    zoom = uniform(2, 0.9, 1.1)
    shift_x, shift_y = uniform(3, -4.0, 4.0), uniform(4, -4.0, 4.0)
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    a0, a1, b0, b1 = flip * cos, -sin, flip * sin, cos
    transforms = tf.stack(
        [
            a0, a1, CENTER + shift_x - a0 * CENTER - a1 * CENTER,
            b0, b1, CENTER + shift_y - b0 * CENTER - b1 * CENTER,
            tf.zeros([batch]), tf.zeros([batch]),
        ],
        axis=1,
    )  # fmt: skip
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=[SIZE, SIZE],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )

    contrast = tf.reshape(uniform(5, 0.7, 1.3), [-1, 1, 1, 1])
    brightness = tf.reshape(uniform(6, -25.0, 25.0), [-1, 1, 1, 1])
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    images = (images - mean) * contrast + mean + brightness
    if noise > 0:
        level = uniform(8, 0.0, 1.0, [batch, 2])
        sigma = tf.where(level[:, 0] < 0.5, level[:, 1] * noise, 0.0)
        grain = tf.random.stateless_normal(tf.shape(images), seeds[9])
        images = images + tf.reshape(sigma, [-1, 1, 1, 1]) * grain
    images = tf.clip_by_value(images, 0.0, 255.0)

    rnd = uniform(7, 0.0, 1.0, [batch, 6])
    area = (0.02 + 0.23 * rnd[:, 0]) * SIZE * SIZE
    aspect = tf.exp(math.log(0.3) + (math.log(3.3) - math.log(0.3)) * rnd[:, 1])
    h = tf.minimum(tf.sqrt(area * aspect), SIZE)
    w = tf.minimum(tf.sqrt(area / aspect), SIZE)
    y0 = rnd[:, 2] * (SIZE - h)
    x0 = rnd[:, 3] * (SIZE - w)
    on = rnd[:, 4] < 0.5
    grid = tf.range(SIZE, dtype=tf.float32)

    def inside(start, length):
        lo, hi = start[:, None], (start + length)[:, None]
        return (grid[None, :] >= lo) & (grid[None, :] < hi)

    mask = inside(y0, h)[:, :, None] & inside(x0, w)[:, None, :] & on[:, None, None]
    fill = tf.reshape(rnd[:, 5] * 255.0, [-1, 1, 1, 1])
    return tf.where(mask[..., None], fill, images)


def mixup(
    images: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor, alpha: float, seed: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Blend each example of a batch with the next one (mixup), ``λ ~ Beta(alpha, alpha)``
    per example; targets and sample weights are blended with the same ``λ``."""
    batch = tf.shape(images)[0]
    gamma_seeds = tf.random.experimental.stateless_split(seed, num=2)
    a = tf.random.stateless_gamma([batch], gamma_seeds[0], alpha)
    b = tf.random.stateless_gamma([batch], gamma_seeds[1], alpha)
    lam = a / tf.maximum(a + b, 1e-12)

    def blend(x):
        mix = tf.reshape(tf.cast(lam, x.dtype), [-1] + [1] * (len(x.shape) - 1))
        return mix * x + (1 - mix) * tf.roll(x, shift=1, axis=0)

    return blend(images), blend(targets), blend(weights)


def train_dataset(
    images: np.ndarray,
    targets: np.ndarray,
    sample_weights: np.ndarray,
    batch_size: int,
    seed: int,
    start_epoch: int = 0,
    mixup_alpha: float = 0.0,
    noise: float = 0.0,
) -> tuple[tf.data.Dataset, int]:
    """An endless dataset of ``(x, target, sample_weight)`` batches and its steps per epoch.

    ``targets`` holds one probability row per face (one-hot, or blended with a teacher's
    scores when distilling); ``sample_weights`` one weight per face.

    Epoch ``e`` is a permutation seeded by ``(seed, e)`` and batch ``k`` of it is augmented
    (and mixed, when ``mixup_alpha`` > 0) with a seed from ``(seed, e, k)``, so a run resumed
    at ``start_epoch`` sees exactly the batches an uninterrupted run would have seen.
    """
    n = len(targets)
    steps = n // batch_size
    pixels = tf.constant(images[..., None])
    targets = tf.constant(targets, tf.float32)
    sample_weights = tf.constant(sample_weights, tf.float32)

    def epoch(e):
        order = tf.argsort(tf.random.stateless_uniform([n], tf.stack([seed, e])))
        batches = tf.reshape(order[: steps * batch_size], [steps, batch_size])
        return tf.data.Dataset.from_tensor_slices(
            (tf.fill([steps], e), tf.range(steps, dtype=tf.int64), batches)
        )

    def make_batch(e, k, index):
        batch_seed = tf.stack([seed, e * 100003 + k])
        x = augment(tf.cast(tf.gather(pixels, index), tf.float32), batch_seed, noise)
        y, w = tf.gather(targets, index), tf.gather(sample_weights, index)
        if mixup_alpha > 0:
            mix_seed = tf.random.experimental.stateless_fold_in(batch_seed, 1)
            x, y, w = mixup(x, y, w, mixup_alpha, mix_seed)
        return normalize(x), y, w

    dataset = (
        tf.data.Dataset.counter(start_epoch)
        .flat_map(epoch)
        .map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    return dataset, steps


def eval_dataset(
    images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int = 256
) -> tf.data.Dataset:
    return (
        tf.data.Dataset.from_tensor_slices((images[..., None], labels))
        .batch(batch_size)
        .map(lambda x, y: (normalize(x), tf.one_hot(y, num_classes)))
        .prefetch(tf.data.AUTOTUNE)
    )
