"""Training batches made on the host with NumPy and OpenCV, without TensorFlow: the input of
:mod:`training.train_torch` on a GPU machine, where TensorFlow is not installed.

The augmentation draws from the same distributions as :func:`training.pipeline.augment`
(flip, ±10° rotation, ±10 % zoom, ±4 px shift, brightness/contrast, random erasing), from
NumPy's generators instead of TensorFlow's, so the two pipelines make different but equally
distributed batches. As in :func:`training.pipeline.train_dataset`, batch ``k`` of epoch ``e``
depends only on ``(seed, e, k)``.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from training.model import OFFSET, SCALE

SIZE = 48
CENTER = (SIZE - 1) / 2.0


def normalize(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) * SCALE + OFFSET


def augment(images: np.ndarray, rng: np.random.Generator, noise: float = 0.0) -> np.ndarray:
    """Augment a batch of ``[B, 48, 48]`` uint8 faces into float pixels (0..255), with the
    distributions of :func:`training.pipeline.augment` (``noise`` included)."""
    batch = len(images)
    flip = np.where(rng.random(batch) < 0.5, -1.0, 1.0)
    angle = rng.uniform(-math.pi / 18, math.pi / 18, batch)
    zoom = rng.uniform(0.9, 1.1, batch)
    shift = rng.uniform(-4.0, 4.0, (batch, 2))
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    out = np.empty((batch, SIZE, SIZE), np.float32)
    for i in range(batch):
        # Output pixel (x, y) reads input pixel M · (x, y, 1), as in the TensorFlow pipeline.
        a0, a1, b0, b1 = flip[i] * cos[i], -sin[i], flip[i] * sin[i], cos[i]
        inverse = np.array(
            [
                [a0, a1, CENTER + shift[i, 0] - (a0 + a1) * CENTER],
                [b0, b1, CENTER + shift[i, 1] - (b0 + b1) * CENTER],
            ]
        )
        out[i] = cv2.warpAffine(
            images[i].astype(np.float32),
            inverse,
            (SIZE, SIZE),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )

    contrast = rng.uniform(0.7, 1.3, (batch, 1, 1))
    brightness = rng.uniform(-25.0, 25.0, (batch, 1, 1))
    mean = out.mean(axis=(1, 2), keepdims=True)
    out = (out - mean) * contrast + mean + brightness
    if noise > 0:
        sigma = np.where(rng.random(batch) < 0.5, rng.uniform(0.0, noise, batch), 0.0)
        sigma = sigma.astype(np.float32)
        out = out + sigma[:, None, None] * rng.standard_normal(out.shape, np.float32)
    out = np.clip(out, 0.0, 255.0)

    area = rng.uniform(0.02, 0.25, batch) * SIZE * SIZE
    aspect = np.exp(rng.uniform(math.log(0.3), math.log(3.3), batch))
    h = np.minimum(np.sqrt(area * aspect), SIZE)
    w = np.minimum(np.sqrt(area / aspect), SIZE)
    y0 = rng.random(batch) * (SIZE - h)
    x0 = rng.random(batch) * (SIZE - w)
    on = rng.random(batch) < 0.5
    fill = rng.random(batch) * 255.0
    grid = np.arange(SIZE, dtype=np.float64)
    rows = (grid >= y0[:, None]) & (grid < (y0 + h)[:, None])
    cols = (grid >= x0[:, None]) & (grid < (x0 + w)[:, None])
    mask = rows[:, :, None] & cols[:, None, :] & on[:, None, None]
    return np.where(mask, fill[:, None, None], out).astype(np.float32)


def train_batches(
    images: np.ndarray,
    targets: np.ndarray,
    sample_weights: np.ndarray,
    batch_size: int,
    seed: int,
    start_epoch: int = 0,
    mixup_alpha: float = 0.0,
    noise: float = 0.0,
    workers: int = 8,
) -> tuple[Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]], int]:
    """An endless iterator of ``(x, target, sample_weight)`` batches and its steps per epoch;
    the arguments are those of :func:`training.pipeline.train_dataset`. ``workers`` threads
    make batches ahead of the accelerator (OpenCV and NumPy release the GIL)."""
    n = len(targets)
    steps = n // batch_size

    def make_batch(e: int, k: int, index: np.ndarray):
        rng = np.random.default_rng([seed, e, k])
        x, y, w = augment(images[index], rng, noise), targets[index], sample_weights[index]
        if mixup_alpha > 0:
            lam = rng.beta(mixup_alpha, mixup_alpha, len(index)).astype(np.float32)
            x = lam[:, None, None] * x + (1 - lam[:, None, None]) * np.roll(x, 1, axis=0)
            y = lam[:, None] * y + (1 - lam[:, None]) * np.roll(y, 1, axis=0)
            w = lam * w + (1 - lam) * np.roll(w, 1)
        return normalize(x)[..., None], y.astype(np.float32), w.astype(np.float32)

    def batches():
        with ThreadPoolExecutor(workers) as pool:
            pending: deque = deque()
            for e in itertools.count(start_epoch):
                order = np.random.default_rng([seed, e]).permutation(n)
                for k in range(steps):
                    index = order[k * batch_size : (k + 1) * batch_size]
                    pending.append(pool.submit(make_batch, e, k, index))
                    if len(pending) > 2 * workers:
                        yield pending.popleft().result()

    return batches(), steps
