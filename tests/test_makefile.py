"""`make run` and `make bench` leave the checkout as they found it, and run at once."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import REPO


def dry_run(target: str, venv: Path) -> str:
    """What `make -n target` would do with the virtual environment at `venv`."""
    return subprocess.run(
        ["make", "-n", target, f"VENV={venv}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


def test_make_run_installs_the_package_only_when_it_changed(tmp_path: Path) -> None:
    """`make run` reinstalled the package (pip, a dozen seconds) before every start."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/python").touch()
    first = dry_run("run", venv)
    assert "pip install" in first and "moodmelody run" in first
    stamp = venv / ".installed-device"
    stamp.touch()
    newer = (REPO / "pyproject.toml").stat().st_mtime + 1
    os.utime(stamp, (newer, newer))
    again = dry_run("run", venv)
    assert "pip install" not in again, again
    assert "moodmelody run" in again


def test_make_bench_writes_no_tracked_file() -> None:
    """Every `make bench` rewrote bench/results.json, a tracked file, with this machine's
    figures; only `--record` may."""
    from bench import run

    def tracked(path: Path) -> bool:
        listed = subprocess.run(
            ["git", "ls-files", "--error-unmatch", str(path.relative_to(REPO))],
            cwd=REPO,
            capture_output=True,
        )
        return listed.returncode == 0

    assert not tracked(run.RESULTS)
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(run.RESULTS.relative_to(REPO))], cwd=REPO
    )
    assert ignored.returncode == 0, f"{run.RESULTS} is ignored by git"
    assert tracked(run.RECORDED)


def test_the_readme_starts_with_setting_it_up_and_keeps_the_history_elsewhere() -> None:
    """A new owner read a developer's README: the first section must be the set-up, and the
    model's development history belongs in training/README.md."""
    readme = (REPO / "README.md").read_text()
    sections = [line for line in readme.splitlines() if line.startswith("## ")]
    assert sections[0] == "## Set it up"
    setup = readme.split("## Set it up", 1)[1].split("\n## ", 1)[0]
    for step in ("Install on the Pi", "Open the page", "Setup code", "Password", "Spotify app"):
        assert f"**{step}** (" in setup, step  # each step says how long it takes
    assert "make run" in setup and "setup code" in setup
    for history in ("session 9", "soup", "lent H100", "session 1's"):
        assert history not in readme, history
        assert history in (REPO / "training/README.md").read_text(), history
    assert "dry-run player" in readme and "../shared/datasets" in readme and "3 GB" in readme
