"""Re-extract the BlazeFace short-range model from the mediapipe wheel and check its sha256.

The model is committed under models/; this script shows where it comes from and lets
anyone verify it. It downloads the wheel from PyPI (run by hand: `make face-model`);
the device itself never depends on mediapipe.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "mediapipe==0.10.14"
MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
TARGET = Path(__file__).resolve().parent / "face_detection_short_range.tflite"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--platform",
                "manylinux2014_x86_64",
                "--dest",
                tmp,
                WHEEL,
            ],
            check=True,
        )
        wheel = next(Path(tmp).glob("mediapipe-*.whl"))
        data = zipfile.ZipFile(wheel).read(MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        print(f"sha256 mismatch: got {digest}, expected {SHA256}", file=sys.stderr)
        return 1
    TARGET.write_bytes(data)
    print(f"{TARGET.name}: {len(data)} bytes, sha256 {digest} (ok)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
