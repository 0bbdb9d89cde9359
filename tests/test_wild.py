"""The real-photo evaluation (training.wild) runs photos through the device's own pipeline."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.frames import face_files, read_gray
from training import EMOTIONS
from training.wild import centred, evaluate_wild

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "emotion_int8.tflite"


def test_a_photo_is_centred_in_a_camera_sized_frame() -> None:
    photo = np.full((350, 350), 200, np.uint8)
    frame = centred(photo)
    assert frame.shape == (480, 640, 3)
    assert (frame[65:415, 145:495] == 200).all()
    assert (frame[:65] == 128).all() and (frame[:, :145] == 128).all()
    big = centred(np.zeros((960, 1280, 3), np.uint8))  # scaled down to fit, not cut
    assert big.shape == (480, 640, 3) and (big == 0).all()


def test_photos_without_a_face_count_as_wrong_over_all_photos(
    fer2013: Path, tmp_path: Path
) -> None:
    """A photo BlazeFace finds no face in is left out of the 'found' figures but counts as
    wrong in the 'all photos' ones, so a model cannot look better by missing hard faces."""
    (tmp_path / "img").mkdir()
    face = cv2.resize(read_gray(face_files(fer2013, "happy", 1)[0]), (300, 300))
    cv2.imwrite(str(tmp_path / "img" / "face.png"), face)
    cv2.imwrite(str(tmp_path / "img" / "wall.png"), np.full((300, 300), 90, np.uint8))
    (tmp_path / "labels.csv").write_text("image,emotion\nface.png,happy\nwall.png,sad\n")

    result, predicted = evaluate_wild(MODEL, tmp_path)
    assert result["photos"] == 2 and result["faces_found"] == 1
    assert predicted[1] == -1
    assert result["found"]["images"] == 1
    correct = predicted[0] == EMOTIONS.index("happy")
    assert result["all_photos"]["accuracy"] == (0.5 if correct else 0.0)
    assert result["all_photos"]["per_class_recall"]["sad"] == 0.0


def test_device_crops_are_what_the_analyser_scores(fer2013: Path, tmp_path: Path) -> None:
    """Teachers are scored on these crops as the device's own model is: the crop of a photo
    must give the model exactly the scores Analyser.analyse gives for that photo."""
    from training.wild import analyser_for, device_crops

    (tmp_path / "img").mkdir()
    face = cv2.resize(read_gray(face_files(fer2013, "surprise", 1)[0]), (280, 280))
    cv2.imwrite(str(tmp_path / "img" / "face.png"), face)
    (tmp_path / "labels.csv").write_text("image,emotion\nface.png,surprise\n")

    crops, labels, found = device_crops(tmp_path, MODEL)
    assert found.tolist() == [True] and labels.tolist() == [EMOTIONS.index("surprise")]
    analyser = analyser_for(MODEL)
    expected = analyser.analyse(centred(face), all_faces=False)[0].prediction.probabilities
    np.testing.assert_array_equal(analyser.classifier.predict(crops[0]).probabilities, expected)
