"""Write provisioning/constraints-<release>.txt: the versions a device installs, per release.

`make device-constraints` runs this on purpose (never the installer, never the tests): pip
resolves pyproject.toml's dependencies for the release's Python on arm64 and on amd64,
without installing anything, and both must come out the same. After a refresh, the chroot
test (tests/test_provisioning_chroot.py) installs and runs the new set for real, and the
README's version table is updated by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYPROJECT = HERE.parent / "pyproject.toml"
ARCHES = ("aarch64", "x86_64")
# pip's --platform takes exact tags: every manylinux a glibc 2.36 (Bookworm) system accepts.
MANYLINUX = (
    "2014",
    "_2_17",
    "_2_24",
    "_2_26",
    "_2_27",
    "_2_28",
    "_2_31",
    "_2_34",
    "_2_35",
    "_2_36",
)
APT_NUMERICS = {"numpy", "opencv-python-headless"}


@dataclass(frozen=True)
class Release:
    name: str
    python: str  # the release's python3, major.minor
    apt_numpy: str | None  # numpy from apt (held there by install.sh), else None: pip's
    note: str


RELEASES = (
    Release(
        "bookworm",
        "3.11",
        "1.24.2",
        "numpy and OpenCV are apt's (python3-numpy, python3-opencv): install.sh adds\n"
        "# numpy==<apt's version> to this list, so no dependency can pull another numpy in.",
    ),
    Release("trixie", "3.13", None, "numpy and OpenCV are pip's, pinned here."),
)


def name_of(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()


def resolve(pip: list[str], release: Release, arch: str, requirements: list[str]) -> list[str]:
    platforms = [f"--platform=manylinux{tag}_{arch}" for tag in MANYLINUX]
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        subprocess.run(
            [
                *pip,
                "install",
                "--quiet",
                "--dry-run",
                "--ignore-installed",
                "--only-binary=:all:",
                f"--python-version={release.python}",
                "--implementation=cp",
                f"--abi=cp{release.python.replace('.', '')}",
                *platforms,
                f"--report={report}",
                *requirements,
            ],
            check=True,
        )
        installs = json.loads(report.read_text())["install"]
    pins = [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in installs]
    return sorted(pins, key=str.lower)


def constraints(pip: list[str], release: Release) -> str:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    if release.apt_numpy:
        requirements = [d for d in dependencies if name_of(d) not in APT_NUMERICS]
        requirements.append(f"numpy=={release.apt_numpy}")
    else:
        requirements = list(dependencies)
    by_arch = {arch: resolve(pip, release, arch, requirements) for arch in ARCHES}
    if by_arch["aarch64"] != by_arch["x86_64"]:
        sys.exit(f"{release.name}: arm64 and amd64 resolve differently: {by_arch}")
    pins = by_arch["aarch64"]
    if release.apt_numpy:
        pins = [p for p in pins if name_of(p) not in APT_NUMERICS]
    header = (
        f"# Mood Melody on Debian {release.name} (Python {release.python}, arm64 and amd64): "
        "what pip installs.\n"
        "# provisioning/install.sh installs with --constraint on this list; "
        "tests/test_provisioning_chroot.py\n"
        "# installs and runs it for real. Refreshed on purpose: `make device-constraints`.\n"
        f"# {release.note}\n"
    )
    return header + "".join(f"{pin}\n" for pin in pins)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pip", default=f"{sys.executable} -m pip", help="the pip to resolve with")
    parser.add_argument("releases", nargs="*", default=[r.name for r in RELEASES])
    args = parser.parse_args()
    for release in RELEASES:
        if release.name in args.releases:
            path = HERE / f"constraints-{release.name}.txt"
            path.write_text(constraints(args.pip.split(), release))
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
