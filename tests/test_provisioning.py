"""provisioning/install.sh and uninstall.sh, run for real into a staged root (--root)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from device.config import Config, dump_config

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ("device", "web_config", "models", "pyproject.toml", "provisioning", "systemd")
SERVICE = "etc/systemd/system/moodmelody.service"
ENABLED = "etc/systemd/system/multi-user.target.wants/moodmelody.service"
CONFIG = "etc/moodmelody/config.toml"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make test` installs it with apt-get")
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tree `make deploy` ships, copied so that nothing is written into the checkout."""
    tree = tmp_path_factory.mktemp("source")
    for name in SHIPPED:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, tree / name)
    for name, stand_in in (
        ("config.example.toml", dump_config(Config())),
        ("README.md", "# Mood Melody\n"),
    ):
        # Until the checkout has them, what they will hold.
        if (REPO / name).exists():
            shutil.copy2(REPO / name, tree / name)
        else:
            (tree / name).write_text(stand_in)
    return tree


def _root(tmp_path: Path, release: str = "bookworm", raspberry_pi: bool = True) -> Path:
    """A staged system: Raspberry Pi OS (its marker file and Raspberry Pi's archive, where
    picamera2 is), or plain Debian."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    number = {"bookworm": 12, "trixie": 13}.get(release, 11)
    (root / "etc/os-release").write_text(
        f'PRETTY_NAME="Debian GNU/Linux {number} ({release})"\nVERSION_CODENAME={release}\n'
    )
    if raspberry_pi:
        (root / "etc/rpi-issue").write_text("Raspberry Pi reference 2025-05-13\n")
        sources = root / "etc/apt/sources.list.d/raspi.list"
        sources.parent.mkdir(parents=True)
        sources.write_text(f"deb http://archive.raspberrypi.com/debian/ {release} main\n")
    return root


Completed = subprocess.CompletedProcess[str]


def _run(script: Path, root: Path, *args: str, ok: bool = True) -> Completed:
    _tool("systemctl")
    result = subprocess.run(
        ["bash", str(script), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if ok:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def install(source: Path, root: Path, *args: str, ok: bool = True) -> Completed:
    return _run(source / "provisioning/install.sh", root, *args, ok=ok)


def uninstall(source: Path, root: Path, *args: str) -> Completed:
    return _run(source / "provisioning/uninstall.sh", root, *args)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def plan(root: Path, name: str) -> list[str]:
    path = root / "moodmelody-plan" / name
    return path.read_text().splitlines() if path.exists() else []


def test_scripts_are_shellcheck_clean() -> None:
    """A shellcheck warning (quoting, unused variable, unreachable code) fails the build."""
    scripts = sorted(str(p) for p in (REPO / "provisioning").glob("*.sh"))
    assert len(scripts) >= 4
    result = subprocess.run(
        [_tool("shellcheck"), "--external-sources", *scripts],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_staged_install_lays_out_files_with_their_modes(source: Path, tmp_path: Path) -> None:
    """Wrong modes would leak the MQTT password (config) or tokens (state) to other users."""
    root = _root(tmp_path)
    install(source, root)

    assert mode(root / "etc/moodmelody") == 0o770
    assert mode(root / CONFIG) == 0o640
    assert (root / CONFIG).read_text() == (source / "config.example.toml").read_text()
    assert mode(root / "etc/moodmelody/config.example.toml") == 0o644
    assert mode(root / "var/lib/moodmelody") == 0o700
    assert mode(root / SERVICE) == 0o644
    assert mode(root / "opt/moodmelody/bin/hotspot.sh") == 0o755
    command = root / "usr/local/bin/moodmelody"
    assert mode(command) == 0o755
    assert "runuser -u moodmelody" in command.read_text()
    app = root / "opt/moodmelody/app"
    assert (app / "models/face_detection_short_range.tflite").is_file()
    assert (app / "device/config.py").is_file()
    assert not list(app.rglob("__pycache__"))
    assert {mode(p) for p in app.rglob("*") if p.is_file()} == {0o644}
    assert {mode(p) for p in app.rglob("*") if p.is_dir()} == {0o755}

    link = root / ENABLED
    assert link.is_symlink()
    assert os.readlink(link) == "/etc/systemd/system/moodmelody.service"
    assert (root / "etc/systemd/system/timers.target.wants/moodmelody-hotspot.timer").is_symlink()

    ownership = plan(root, "ownership")
    assert "root:moodmelody 0770 /etc/moodmelody" in ownership
    assert "root:moodmelody 0640 /etc/moodmelody/config.toml" in ownership
    assert "moodmelody:moodmelody 0700 /var/lib/moodmelody" in ownership
    assert "root:root u=rwX,go=rX /opt/moodmelody/app (recursive)" in ownership
    commands = plan(root, "commands")
    assert any(c.startswith("useradd --system --user-group") for c in commands)
    assert "systemctl restart moodmelody.service" in commands


def test_dry_run_lists_every_action_and_writes_nothing(source: Path, tmp_path: Path) -> None:
    """--dry-run that wrote a file or skipped listing an action would mislead the reader."""
    root = _root(tmp_path)
    before = sorted(root.rglob("*"))
    result = install(source, root, "--dry-run", "--hostname")
    assert sorted(root.rglob("*")) == before
    out = result.stdout
    for line in (
        "would run: apt-get install -y --no-install-recommends python3-picamera2",
        "would install",
        "/etc/moodmelody/config.toml",
        "would create directory /var/lib/moodmelody",
        "would run: systemctl --root=",
        "would run: hostname moodmelody",
    ):
        assert line in out, line


def test_upgrade_keeps_edited_settings_and_tokens(source: Path, tmp_path: Path) -> None:
    """Re-running install.sh must not reset what the user set up on the page."""
    root = _root(tmp_path)
    install(source, root)
    edited = (
        (root / CONFIG)
        .read_text()
        .replace('listen = "0.0.0.0:8080"', 'listen = "0.0.0.0:9090"')
        .replace('password = ""', 'password = "hunter2"')
    )
    (root / CONFIG).write_text(edited)
    token = root / "var/lib/moodmelody/spotify-token.json"
    token.write_text('{"refresh_token": "x"}')
    stale = root / "opt/moodmelody/app/device/removed_module.py"
    stale.write_text("")

    result = install(source, root)
    assert (root / CONFIG).read_text() == edited
    assert token.read_text() == '{"refresh_token": "x"}'
    assert not stale.exists()
    assert "keeping the existing /etc/moodmelody/config.toml" in result.stdout
    assert re.search(r"Open http://\S+\.local:9090 ", result.stdout)


def test_release_decides_where_numpy_and_opencv_come_from(source: Path, tmp_path: Path) -> None:
    """On Bookworm pip's OpenCV would drag numpy 2 over picamera2's numpy 1.24."""
    plans = {}
    for release in ("bookworm", "trixie"):
        root = _root(tmp_path / release, release)
        install(source, root)
        plans[release] = plan(root, "commands")

    bookworm, trixie = plans["bookworm"], plans["trixie"]
    apt_line = "apt-get install -y python3-venv avahi-daemon iw procps"
    assert f"{apt_line} python3-numpy python3-opencv" in bookworm
    assert apt_line in trixie
    pip = "/opt/moodmelody/venv/bin/pip install --constraint /opt/moodmelody/constraints.txt"
    assert f"{pip} --no-deps --editable /opt/moodmelody/app" in bookworm
    pip_deps = next(c for c in bookworm if c.startswith(f"{pip} ai-edge-litert"))
    assert "numpy" not in pip_deps and "opencv" not in pip_deps
    assert "spotipy" in pip_deps
    assert f"{pip} --editable /opt/moodmelody/app" in trixie
    assert not any("--no-deps" in c for c in trixie)
    assert all(c.startswith(pip) for c in bookworm + trixie if " pip install" in c)
    for commands in plans.values():
        assert "python3 -m venv --clear --system-site-packages /opt/moodmelody/venv" in commands


def test_unsupported_release_is_refused_clearly(source: Path, tmp_path: Path) -> None:
    """Installing onto Bullseye's Python 3.9 would fail much later, and confusingly."""
    root = _root(tmp_path, "bullseye")
    result = install(source, root, ok=False)
    assert result.returncode != 0
    assert "supported are Debian 12 bookworm and 13 trixie" in result.stderr
    assert not (root / "opt").exists()


def test_spotify_connect_speaker_becomes_the_default(source: Path, tmp_path: Path) -> None:
    """The raspotify name and our [spotify] device_name must match, or nothing plays."""
    root = _root(tmp_path)
    install(source, root, "--with-spotify-connect", "Living Room")
    assert 'LIBRESPOT_NAME="Living Room"' in (root / "etc/raspotify/conf").read_text()
    assert 'device_name = "Living Room"' in (root / CONFIG).read_text()
    assert "apt-get install -y raspotify" in plan(root, "commands")

    # A speaker the user chose since is theirs; the raspotify line is replaced, not added.
    config = (root / CONFIG).read_text().replace('"Living Room"', '"Kitchen"')
    (root / CONFIG).write_text(config)
    install(source, root, "--with-spotify-connect", "Attic")
    assert 'device_name = "Kitchen"' in (root / CONFIG).read_text()
    assert (root / "etc/raspotify/conf").read_text().count("LIBRESPOT_NAME=") == 1

    bad = install(source, root, "--with-spotify-connect", 'x"; rm -rf /', ok=False)
    assert bad.returncode != 0 and "speaker name" in bad.stderr


def test_hostname_only_when_asked(source: Path, tmp_path: Path) -> None:
    """Renaming the device without consent would break the user's other bookmarks."""
    root = _root(tmp_path)
    (root / "etc/hostname").write_text("raspberrypi\n")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n")
    result = install(source, root)
    assert (root / "etc/hostname").read_text() == "raspberrypi\n"
    assert "http://raspberrypi.local:8080" in result.stdout

    result = install(source, root, "--hostname")
    assert (root / "etc/hostname").read_text() == "moodmelody\n"
    assert (root / "etc/hosts").read_text() == "127.0.0.1\tlocalhost\n127.0.1.1\tmoodmelody\n"
    assert "http://moodmelody.local:8080" in result.stdout
    assert "Setup code: see: journalctl -u moodmelody" in result.stdout


def test_setup_code_is_printed_when_the_daemon_wrote_one(source: Path, tmp_path: Path) -> None:
    """Without the code the user cannot log in to the page they were just sent to."""
    root = _root(tmp_path)
    code = root / "var/lib/moodmelody/setup-code"
    code.parent.mkdir(parents=True)
    code.write_text("482913\n")
    assert "Setup code: 482913" in install(source, root).stdout


def test_prefix_moves_the_program_and_its_unit_follows(source: Path, tmp_path: Path) -> None:
    """A unit still pointing at /opt/moodmelody after --prefix would never start."""
    root = _root(tmp_path)
    install(source, root, "--prefix", "/srv/mm")
    unit = (root / SERVICE).read_text()
    assert "ExecStart=/srv/mm/venv/bin/moodmelody run --config /etc/moodmelody/config.toml" in unit
    assert "/opt/moodmelody" not in unit
    assert (root / "srv/mm/app/device").is_dir()
    hotspot = (root / "etc/systemd/system/moodmelody-hotspot.service").read_text()
    assert "ExecStart=/srv/mm/bin/hotspot.sh" in hotspot
    assert "/srv/mm/venv/bin/moodmelody" in (root / "usr/local/bin/moodmelody").read_text()


def test_no_hotspot_on_upgrade_removes_it(source: Path, tmp_path: Path) -> None:
    """--no-hotspot must take away a hotspot an earlier install set up."""
    root = _root(tmp_path)
    install(source, root)
    install(source, root, "--no-hotspot")
    system = root / "etc/systemd/system"
    assert not (system / "moodmelody-hotspot.timer").exists()
    assert not (system / "timers.target.wants/moodmelody-hotspot.timer").is_symlink()
    assert not (root / "etc/NetworkManager/dnsmasq-shared.d/moodmelody-captive.conf").exists()
    assert (root / ENABLED).is_symlink()


def test_uninstall_keeps_settings_unless_purged(source: Path, tmp_path: Path) -> None:
    """Uninstall must not eat tokens by default, and --purge must leave nothing behind."""
    root = _root(tmp_path)
    install(source, root)
    uninstall(source, root)
    assert not (root / SERVICE).exists()
    assert not (root / ENABLED).is_symlink()
    assert not (root / "opt/moodmelody").exists()
    assert not (root / "usr/local/bin/moodmelody").exists()
    assert (root / CONFIG).is_file()
    assert (root / "var/lib/moodmelody").is_dir()
    assert "/usr/local/bin/moodmelody forget" in plan(root, "commands")

    result = uninstall(source, root, "--purge")
    assert not (root / "etc/moodmelody").exists()
    assert not (root / "var/lib/moodmelody").exists()
    assert "removing /etc/moodmelody" in result.stdout


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, equals, version = line.partition("==")
            assert equals and version, f"{path.name}: {line!r} is not name==version"
            pins[canonicalize_name(name)] = version
    return pins


@pytest.mark.parametrize("release", ["bookworm", "trixie"])
def test_constraints_pin_every_dependency(release: str) -> None:
    """A dependency left unpinned would get whatever PyPI has that day (OpenCV 5.0.0 once)."""
    pins = _pins(REPO / f"provisioning/constraints-{release}.txt")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    apt_numerics = {"numpy", "opencv-python-headless"}
    for requirement in map(Requirement, pyproject["project"]["dependencies"]):
        name = canonicalize_name(requirement.name)
        if release == "bookworm" and name in apt_numerics:
            assert name not in pins, f"{name} is apt's on Bookworm"
        else:
            assert name in pins, f"{name} is not pinned for {release}"
            assert requirement.specifier.contains(pins[name]), (name, pins[name])


def test_install_holds_pip_to_the_pinned_versions(source: Path, tmp_path: Path) -> None:
    """Every pip step, and any later one in the venv, must get the release's tested set."""
    for release in ("bookworm", "trixie"):
        root = _root(tmp_path / release, release)
        install(source, root)
        installed = root / "opt/moodmelody/constraints.txt"
        assert _pins(installed) == _pins(source / f"provisioning/constraints-{release}.txt")
        assert mode(installed) == 0o644
        pip_conf = (root / "opt/moodmelody/venv/pip.conf").read_text()
        assert pip_conf == "[install]\nconstraint = /opt/moodmelody/constraints.txt\n"


def test_plain_debian_installs_without_picamera2(source: Path, tmp_path: Path) -> None:
    """A mini PC or laptop with a USB webcam has no Raspberry Pi archive: install anyway."""
    root = _root(tmp_path / "debian", "trixie", raspberry_pi=False)
    result = install(source, root)
    assert not any("picamera2" in c for c in plan(root, "commands"))
    assert "==> Debian GNU/Linux 13 (trixie)\n" in result.stdout
    assert "Raspberry Pi OS" not in result.stdout
    assert "Camera: USB webcams (/dev/video*) only; picamera2 is not installed" in result.stdout

    pi = _root(tmp_path / "pi", "bookworm")
    result = install(source, pi)
    assert "apt-get install -y --no-install-recommends python3-picamera2" in plan(pi, "commands")
    assert "==> Raspberry Pi OS bookworm\n" in result.stdout
    assert "Camera: the Raspberry Pi camera (picamera2) or a USB webcam." in result.stdout

    # A derivative with its own codename, built on Debian's (as LMDE says it).
    lmde = _root(tmp_path / "lmde", "faye", raspberry_pi=False)
    (lmde / "etc/os-release").write_text(
        'PRETTY_NAME="LMDE 6 (faye)"\nVERSION_CODENAME=faye\nDEBIAN_CODENAME=bookworm\n'
    )
    result = install(source, lmde)
    assert "==> LMDE 6 (faye)\n" in result.stdout
    assert "python3-numpy python3-opencv" in " ".join(plan(lmde, "commands"))


def test_image_build_enables_units_and_starts_nothing(source: Path, tmp_path: Path) -> None:
    """Building an SD-card image (pi-gen, a chroot), starting a unit or renaming the build
    host would be wrong, and waiting for a setup code from a daemon that never runs is 15 s."""
    root = _root(tmp_path)
    result = install(source, root, "--image", "--hostname")
    commands = plan(root, "commands")
    for started in ("systemctl restart", "systemctl start", "daemon-reload", "hostname "):
        assert not any(started in c for c in commands), started
    assert (root / ENABLED).is_symlink()
    assert (root / "etc/systemd/system/timers.target.wants/moodmelody-hotspot.timer").is_symlink()
    assert (root / "etc/hostname").read_text() == "moodmelody\n"
    assert "At the first boot moodmelody.service starts" in result.stdout
    assert "http://moodmelody.local:8080" in result.stdout

    result = _run(source / "provisioning/uninstall.sh", root, "--image")
    assert not (root / SERVICE).exists()
    assert not any("systemctl" in c or "forget" in c for c in plan(root, "commands"))


def test_uninstall_removes_the_hotspot_profile_without_networkmanager(
    source: Path, tmp_path: Path
) -> None:
    """With NetworkManager stopped (or in an image), its saved hotspot profile is a file."""
    root = _root(tmp_path)
    install(source, root)
    profile = root / "etc/NetworkManager/system-connections/moodmelody-setup.nmconnection"
    profile.parent.mkdir(parents=True)
    profile.write_text("[connection]\nid=moodmelody-setup\n")
    result = uninstall(source, root)
    assert not profile.exists()
    assert "Error" not in result.stdout + result.stderr
