"""Noise reduction of a face crop, for a household whose camera is grainy (a dim room, a small
sensor turning its gain up).

The shipped model reads crops as they are; the household calibration also reads each of its
samples through `denoised` and switches to it when they read better that way
(`device.calibration.fit`). Non-local means on the network's input size: it keeps edges (the
mouth, the brows) where a blur would soften them. Chosen on Training faces with
``python -m training.household --split validation``.
"""

from __future__ import annotations

import cv2
import numpy as np

STRENGTH = 10.0  # fastNlMeansDenoising's h: noise of about this grey level is removed
PATCH = 3  # pixels: the patches it compares
SEARCH = 7  # pixels: the window it searches for similar patches


def denoised(face: np.ndarray) -> np.ndarray:
    """A grayscale crop (uint8) with its sensor noise reduced; same size and type."""
    return cv2.fastNlMeansDenoising(face, None, STRENGTH, PATCH, SEARCH)
