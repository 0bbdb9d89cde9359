"""Training and the device prepare a face identically: same pixels in, same model input out.

The model learns from FER2013 faces as training's loader decodes them; the device cuts faces
out of camera frames. If either path changed a face the other does not (a histogram
equalisation, another grey conversion, another resize or normalisation), the model would see
faces on the Pi unlike those it learnt from, and no test of accuracy would notice.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from device.classifier import EmotionClassifier
from device.detector import Face, crop_face
from training import EMOTIONS
from training.data import load_folder
from training.evaluate import Int8Model
from training.host_pipeline import normalize

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "emotion_int8.tflite"
SCALE_UP = 4  # the face as the camera sees it: 192 px across


def _frame_with(face: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """An RGB 640×480 frame holding ``face`` enlarged ×4 by pixel repetition at (x0, y0)."""
    frame = np.full((480, 640, 3), 120, np.uint8)
    big = cv2.resize(face, None, fx=SCALE_UP, fy=SCALE_UP, interpolation=cv2.INTER_NEAREST)
    side = big.shape[0]
    frame[y0 : y0 + side, x0 : x0 + side] = cv2.cvtColor(big, cv2.COLOR_GRAY2RGB)
    return frame


def test_a_frame_gives_the_model_the_input_training_gave_it(fer2013: Path) -> None:
    """The same faces through training's loader and normalisation, and through the device's
    grey conversion, crop, resize and quantisation, reach the int8 model as the same tensor."""
    faces = load_folder(fer2013 / "test")
    picks = np.random.default_rng(0).choice(len(faces), 20, replace=False)
    device = EmotionClassifier(MODEL)
    training = Int8Model(MODEL)
    for i in picks:
        face = faces.images[i]
        # The loader hands over the file's pixels as they are: no equalisation, no contrast.
        on_disk = cv2.imread(str(fer2013 / "test" / faces.names[i]), cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(face, on_disk)

        x0, y0 = 200, 100
        frame = _frame_with(face, x0, y0)
        box = Face(float(x0), float(y0), 48.0 * SCALE_UP, 48.0 * SCALE_UP, 1.0)
        crop = crop_face(frame, box, device.input_size, margin=0.0)  # grey from the RGB frame
        np.testing.assert_array_equal(crop, face)

        np.testing.assert_array_equal(device.input_tensor(crop), training.quantize(face))
        # The float input training feeds the network is the one the int8 input stands for.
        scale, zero_point = device._input["quantization"]
        dequantised = (device.input_tensor(crop).astype(np.float32) - zero_point) * scale
        np.testing.assert_allclose(
            dequantised.reshape(48, 48), normalize(face), atol=scale / 2 + 1e-6
        )


def test_the_shipped_json_normalises_as_training_does() -> None:
    """The JSON's normalisation is the one training applied (pixels 0..255 to -1..1)."""
    from training.model import OFFSET, SCALE

    meta = EmotionClassifier(MODEL).metadata
    assert meta["normalization"] == pytest.approx({"scale": SCALE, "offset": OFFSET})
    assert meta["labels"] == list(EMOTIONS)
    assert meta["input_size"] == [48, 48]


def test_the_shared_faces_are_not_equalised(fer2013: Path) -> None:
    """The faithful FER2013 copy: histogram-equalised faces spread their grey levels almost
    uniformly (standard deviation near 74, every face using the full 0..255 range); real faces
    do not. Training on the old, equalised copy taught the model faces no camera delivers."""
    for split in ("train", "test"):
        faces = load_folder(fer2013 / split).images
        pixels = faces.reshape(len(faces), -1)
        assert np.median(pixels.std(axis=1)) < 64, split  # faithful: 54, equalised: 75
        full_range = (pixels.min(axis=1) == 0) & (pixels.max(axis=1) == 255)
        assert full_range.mean() < 0.5, split  # faithful: 0.17, equalised: 1.0
