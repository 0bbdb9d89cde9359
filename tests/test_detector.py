"""BlazeFace decoding in numpy: anchors, weighted NMS, and real faces found in real frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device import EMOTIONS
from device.config import Config
from device.detector import FaceDetector, crop_face, ssd_anchors, weighted_nms
from device.pipeline import Analyser
from tests.frames import background, face_files, face_frame, read_gray


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(Config().model_path("face_detector"))


def test_anchors_match_the_model_layout() -> None:
    """16×16 cells × 2 anchors at stride 8, then 8×8 × 6 at stride 16: 896, centred."""
    anchors = ssd_anchors()
    assert anchors.shape == (896, 2)
    assert np.allclose(anchors[0], [0.5 / 16, 0.5 / 16]) and np.allclose(anchors[1], anchors[0])
    assert np.allclose(anchors[512], [0.5 / 8, 0.5 / 8])
    assert np.allclose(anchors[512:518], anchors[512])
    assert np.allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


def test_weighted_nms_merges_overlaps_and_keeps_separate_boxes() -> None:
    boxes = np.array([[0.1, 0.1, 0.3, 0.3], [0.12, 0.1, 0.32, 0.3], [0.6, 0.6, 0.8, 0.8]])
    scores = np.array([0.9, 0.6, 0.8])
    merged = weighted_nms(boxes, scores)
    assert len(merged) == 2
    (first, s1), (second, s2) = merged
    assert s1 == 0.9 and s2 == 0.8
    assert first[0] == pytest.approx((0.1 * 0.9 + 0.12 * 0.6) / 1.5)
    assert np.allclose(second, boxes[2])


def test_an_empty_room_has_no_face(detector: FaceDetector) -> None:
    assert detector.detect(background(seed=3)) == []


def pasted_faces(fer2013: Path) -> list[tuple[Path, int, tuple[int, int], np.ndarray]]:
    """30 FER2013 test faces per emotion, enlarged into 640×480 frames at random places and
    sizes: (file, face size, centre, frame)."""
    rng = np.random.default_rng(7)
    cases = []
    for emotion in EMOTIONS:
        for path in face_files(fer2013, emotion, 30, seed=2):
            size = int(rng.integers(140, 260))
            centre = (
                int(rng.integers(size // 2, 640 - size // 2)),
                int(rng.integers(size // 2, 480 - size // 2)),
            )
            cases.append(
                (path, size, centre, face_frame(read_gray(path), size, centre, seed=len(cases)))
            )
    return cases


def test_real_faces_are_found_where_they_are(detector: FaceDetector, fer2013: Path) -> None:
    """Prints the detection rate; FER2013's tight 48×48 crops are harder than a real
    camera view (little context around the face), so this is a floor."""
    cases = pasted_faces(fer2013)
    found = 0  # the largest box sits on the pasted face
    for _, size, centre, frame in cases:
        faces = detector.detect(frame)
        if faces:
            box = faces[0]
            cx, cy = box.x + box.width / 2, box.y + box.height / 2
            in_place = abs(cx - centre[0]) < size * 0.25 and abs(cy - centre[1]) < size * 0.35
            found += in_place and 0.4 * size < box.width < 1.5 * size
    rate = found / len(cases)
    print(f"\nface detection rate on {len(cases)} FER2013 test faces in frames: {rate:.1%}")
    assert rate >= 0.85


def test_the_pipeline_labels_found_faces_almost_as_well_as_the_crops(fer2013: Path) -> None:
    """Detection, cropping and resizing lose little: the emotion read from the camera-like
    frame agrees with the label about as often as the model on the original 48×48 crop."""
    analyser = Analyser.from_config(Config())
    cases = pasted_faces(fer2013)
    direct = through_frames = found = 0
    for path, _, _, frame in cases:
        label = EMOTIONS.index(path.parent.name)
        direct += int(analyser.classifier.predict(read_gray(path)).probabilities.argmax()) == label
        results = analyser.analyse(frame, all_faces=False)
        if results:
            found += 1
            through_frames += int(results[0].prediction.probabilities.argmax()) == label
    print(
        f"\naccuracy on {len(cases)} FER2013 test faces: {direct / len(cases):.1%} on the 48×48 "
        f"crops, {through_frames / found:.1%} through frames ({found} found)"
    )
    assert through_frames / found >= direct / len(cases) - 0.10


def test_two_faces_largest_first(detector: FaceDetector, fer2013: Path) -> None:
    big, small = (read_gray(p) for p in face_files(fer2013, "happy", 2, seed=5))
    frame = face_frame(big, 220, (180, 240))
    frame[180:320, 430:570] = face_frame(small, 140, (500, 250))[180:320, 430:570]
    faces = detector.detect(frame)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area and faces[0].x < 320 < faces[1].x


def test_crop_at_the_edge_keeps_the_face_square(detector: FaceDetector) -> None:
    from device.detector import Face

    gray = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)
    crop = crop_face(
        np.repeat(gray[..., None], 3, axis=2), Face(-10, -10, 40, 30, 0.9), (48, 48), margin=0.2
    )
    assert crop.shape == (48, 48)
