"""install.sh and uninstall.sh for real, as root, in a fresh Debian chroot (debootstrap).

The staged tests (test_provisioning.py) check what the scripts would do; this one does it:
apt, the service user, pip with the pinned versions, a daemon run as that user on a clip,
the units verified in place, an upgrade, uninstall and --purge. A minbase Debian with
systemd, NetworkManager and sudo stands in for Raspberry Pi OS Lite; without Raspberry Pi's
archive it is also the mini PC / laptop case (no picamera2), and as a chroot without a
running systemd it is an image build (units enabled, nothing started).

The base tree is built once per machine and kept as a tarball in CACHE, with the .deb and
pip downloads beside it; everything else happens in a temporary copy that is unmounted and
removed afterwards, whatever happened (a tree left by a killed run is swept at the next).
MOODMELODY_CHROOT_RELEASES picks the releases (default: trixie bookworm; empty: none).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import queue
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_process import PRESENCE_LINE, build_clip, write_config

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("MOODMELODY_CI_CACHE", "/var/cache/moodmelody-ci"))
MIRROR = "http://deb.debian.org/debian"
# What Raspberry Pi OS Lite has that a minbase lacks, and the installer relies on.
# (dbus and libpam-systemd named: debootstrap does not choose between alternatives.)
BASE_PACKAGES = (
    *("systemd", "systemd-sysv", "dbus", "libpam-systemd"),
    *("network-manager", "sudo", "ca-certificates"),
)
TMPFS_MIN_AVAILABLE = 8 << 30  # the tree (~1.5 GB installed) on a tmpfs when this is free
BASE_MAX_AGE_S = 7 * 24 * 3600  # then built again, so that apt's upgrades stay small
RELEASES = os.environ.get("MOODMELODY_CHROOT_RELEASES", "trixie bookworm").split()
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The host's way out to the archives and PyPI (a proxy, a pip timeout), passed on as is.
PASSED_ON = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
PASSED_ON += ("PIP_DEFAULT_TIMEOUT",)
BENIGN_VERIFY = re.compile(r"(user|group) .*(not found|does not exist|unknown)", re.IGNORECASE)

pytestmark = pytest.mark.slow


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first."""
    prefix = str(path)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def _unmount_all(path: Path) -> None:
    for _ in range(3):
        points = _mounts_under(path)
        if not points:
            return
        for point in points:
            if subprocess.run(["umount", point], check=False).returncode != 0:
                subprocess.run(["umount", "--lazy", point], check=False)
    if _mounts_under(path):
        raise RuntimeError(f"still mounted under {path}: {_mounts_under(path)}")


def _base_tarball(release: str) -> Path:
    """The debootstrap tree of `release`, built on first use (under a lock) and kept."""
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    key = hashlib.sha256(f"{MIRROR} {' '.join(BASE_PACKAGES)}".encode()).hexdigest()[:12]
    tarball = CACHE / f"base-{release}-{arch}-{key}.tar"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.exists() and time.time() - tarball.stat().st_mtime < BASE_MAX_AGE_S:
            return tarball
        if shutil.which("debootstrap") is None:
            pytest.fail("debootstrap is not installed: `make test` installs it with apt-get")
        building = Path(tempfile.mkdtemp(prefix="building-", dir=CACHE))
        try:
            tree = building / "tree"
            command = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}"]
            result = subprocess.run(
                [*command, release, str(tree), MIRROR],
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            try:
                assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            finally:
                _unmount_all(tree)  # debootstrap mounts /proc and /sys while it works
            audit = subprocess.run(
                ["chroot", str(tree), "dpkg", "--audit"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert audit.stdout == "", f"debootstrap left packages half-installed:\n{audit.stdout}"
            partial = tarball.with_suffix(".partial")
            subprocess.run(
                ["tar", "--numeric-owner", "-C", str(tree), "-cf", str(partial), "."], check=True
            )
            partial.rename(tarball)
        finally:
            _remove_tree(building)
    return tarball


class Chroot:
    """A base tree's fresh copy, with /proc, /sys and a /dev mounted; `run` runs in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
        self.env |= {k: v for k, v in os.environ.items() if k in PASSED_ON}
        if os.environ.get("PIP_CERT"):
            self.env["PIP_CERT"] = "/etc/ssl/certs/ca-certificates.crt"

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def command(self, *args: str) -> list[str]:
        return [
            "chroot",
            str(self.root),
            "env",
            "-i",
            *(f"{k}={v}" for k, v in self.env.items()),
            *args,
        ]

    def run(
        self, *args: str, timeout: float = 120, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if ok:
            assert result.returncode == 0, (
                f"{args}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result


def _available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _remove_tree(root: Path) -> None:
    """Unmount what is mounted in `root`, then delete it (never across a mount point)."""
    _unmount_all(root)
    subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=True)


def _sweep_stale_roots() -> None:
    """Trees left by runs that were killed before their clean-up (their process is gone)."""
    for stale in (CACHE / "roots").glob("*-*"):
        pid = stale.name.rsplit("-", 1)[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _remove_tree(stale)


def _mount_dev(dev: Path) -> None:
    """A /dev of its own (tmpfs with the usual nodes, a private devpts, /dev/shm): the host's
    is never bound in, so no clean-up of a tree left mounted can delete host device nodes."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755,nosuid", "tmpfs", str(dev)], check=True)
    for name, major, minor in (
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ):
        os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        (dev / name).chmod(0o666)
    for name, to in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ):
        (dev / name).symlink_to(to)
    (dev / "pts").mkdir()
    (dev / "shm").mkdir()
    pts = ["-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=620", "devpts"]
    subprocess.run(["mount", *pts, str(dev / "pts")], check=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", str(dev / "shm")], check=True
    )


@contextlib.contextmanager
def chroot(release: str) -> Iterator[Chroot]:
    """A fresh copy of the base tree, with /proc, /sys, /dev; unmounted and removed after."""
    tarball = _base_tarball(release)
    with open(CACHE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _sweep_stale_roots()
    root = CACHE / "roots" / f"{release}-{os.getpid()}"
    if root.exists():
        _remove_tree(root)
    root.mkdir(parents=True)
    try:
        if _available_memory() >= TMPFS_MIN_AVAILABLE:
            # In memory where there is room: dpkg's fsyncs cost nothing, removal is a umount.
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=4g", "tmpfs", str(root)], check=True
            )
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-xf", str(tarball)], check=True)
        box = Chroot(root)
        # The host's network setup: name resolution and any local certificate authority.
        for name in ("resolv.conf", "hosts"):
            shutil.copy2(f"/etc/{name}", root / "etc" / name)
        local_cas = Path("/usr/local/share/ca-certificates")
        if local_cas.is_dir():
            shutil.copytree(local_cas, box.path(str(local_cas)), dirs_exist_ok=True)
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
        subprocess.run(["mount", "-t", "sysfs", "sysfs", str(root / "sys")], check=True)
        _mount_dev(root / "dev")
        # Downloads kept between runs: the archives' .debs and pip's wheels.
        for cache, inside in (("apt", "var/cache/apt/archives"), ("pip", "root/.cache/pip")):
            kept = CACHE / f"{cache}-{release}"
            kept.mkdir(parents=True, exist_ok=True)
            box.path(inside).mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "--bind", str(kept), str(box.path(inside))], check=True)
        box.run("update-ca-certificates")
        yield box
    finally:
        _remove_tree(root)


def _checkout_into(box: Chroot, inside: str) -> None:
    """The project as a user's checkout has it: the files git knows (tracked and new)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    target = box.path(inside)
    for name in filter(None, (n.decode() for n in listed)):
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)


def _stat(box: Chroot, *paths: str) -> dict[str, str]:
    out = box.run("stat", "-c", "%n %U:%G %a", *paths).stdout
    return {line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines()}


def _daemon_sees_a_face(box: Chroot, config: str, timeout: float = 180) -> list[str]:
    """`moodmelody run` (as the service user, through /usr/local/bin/moodmelody) until it
    logs that someone is there; its log lines so far."""
    process = subprocess.Popen(
        box.command("/usr/local/bin/moodmelody", "run", "--config", config, "--fast"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True)
    reader.start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if process.poll() is not None:
                    break
                continue
            seen.append(line.rstrip())
            match = PRESENCE_LINE.search(line)
            if match and match.group(1) == "someone there":
                return seen
        raise AssertionError("the daemon saw no face:\n" + "\n".join(seen[-40:]))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        reader.join(timeout=10)
        process.stdout.close()


@pytest.mark.parametrize("release", RELEASES)
def test_install_runs_and_uninstalls_in_a_fresh_debian(
    release: str, tmp_path: Path, fer2013: Path
) -> None:
    """The whole life of an installation on a fresh system; each step needs the one before."""
    if os.geteuid() != 0:
        pytest.fail("needs root (debootstrap, chroot, mount): run `make test` as root")
    timings: dict[str, float] = {}
    started = time.monotonic()

    def lap(name: str) -> None:
        nonlocal started
        timings[name] = round(time.monotonic() - started, 1)
        started = time.monotonic()

    clip = build_clip(tmp_path / "clip.avi", fer2013, [(None, 1.0), ("happy", 5.0)], fps=10)
    lap("clip")
    with chroot(release) as box:
        lap("base")
        checkout = "/root/moodmelody"
        _checkout_into(box, checkout)
        shutil.copy2(clip, box.path("/tmp/clip.avi"))
        box.path("/tmp/clip.avi").chmod(0o644)

        install = box.run("bash", f"{checkout}/provisioning/install.sh", timeout=900)
        lap("install")
        out = install.stdout
        number = {"bookworm": 12, "trixie": 13}[release]
        assert f"==> Debian GNU/Linux {number} ({release})" in out
        assert "Raspberry Pi OS" not in out
        assert "Camera: USB webcams (/dev/video*) only" in out  # no Raspberry Pi archive here
        assert "At the first boot moodmelody.service starts" in out  # a chroot: an image build
        assert "systemctl restart" not in out and "setup code:" not in out.lower()

        # The pinned versions, and on Bookworm apt's numpy and OpenCV under them.
        pins = {}
        for line in box.path("/opt/moodmelody/constraints.txt").read_text().splitlines():
            if line and not line.startswith("#"):
                name, _, version = line.partition("==")
                pins[name] = version
        probe = box.run(
            "/opt/moodmelody/venv/bin/python",
            "-c",
            "import sys, importlib.metadata as m, numpy, cv2\n"
            "for name in sys.argv[1:]: print(name, m.version(name))\n"
            "print('numpy-file', numpy.__file__)\nprint('cv2-file', cv2.__file__)",
            *pins,
        ).stdout
        got = dict(line.split(" ", 1) for line in probe.splitlines())
        assert {name: got[name] for name in pins} == pins
        if release == "bookworm":
            assert got["numpy-file"].startswith("/usr/lib/python3/dist-packages/")
            assert got["cv2-file"].startswith("/usr/lib/python3/dist-packages/")
            # A later pip run by hand is held to apt's numpy too (the venv's pip.conf).
            later = box.run(
                "/opt/moodmelody/venv/bin/pip", "install", "--dry-run", "numpy>=2", ok=False
            )
            assert later.returncode != 0 and "numpy" in later.stderr, later.stdout
        else:
            assert "/opt/moodmelody/venv/" in got["numpy-file"]

        lines = box.run("/usr/local/bin/moodmelody", "check", ok=False).stdout.splitlines()
        for part in ("config", "runtime", "models"):
            assert any(line.startswith(f"ok   {part}:") for line in lines), (part, lines)
        lap("check")

        write_config(box.path("/tmp/run.toml"), Path("/var/lib/moodmelody"), Path("/tmp/clip.avi"))
        box.path("/tmp/run.toml").chmod(0o644)
        log = _daemon_sees_a_face(box, "/tmp/run.toml")
        assert any("models loaded" in line for line in log), log
        # The service user keeps the last good copy beside the config, private to it.
        assert _stat(box, "/tmp/run.last-good.toml") == {
            "/tmp/run.last-good.toml": "moodmelody:moodmelody 600"
        }
        lap("daemon")

        units = [
            f"/etc/systemd/system/{u}"
            for u in (
                "moodmelody.service",
                "moodmelody-hotspot.service",
                "moodmelody-hotspot.timer",
            )
        ]
        verify = box.run("systemd-analyze", "verify", "--man=no", *units, ok=False)
        problems = [line for line in verify.stderr.splitlines() if not BENIGN_VERIFY.search(line)]
        assert verify.returncode == 0 and problems == [], verify.stderr
        assert box.path(
            "/etc/systemd/system/multi-user.target.wants/moodmelody.service"
        ).is_symlink()
        assert box.path(
            "/etc/systemd/system/timers.target.wants/moodmelody-hotspot.timer"
        ).is_symlink()
        lap("verify")

        assert _stat(
            box,
            "/etc/moodmelody",
            "/etc/moodmelody/config.toml",
            "/etc/moodmelody/config.example.toml",
            "/var/lib/moodmelody",
            "/opt/moodmelody/app",
            "/opt/moodmelody/app/device/config.py",
            "/opt/moodmelody/constraints.txt",
            "/opt/moodmelody/bin/hotspot.sh",
            "/usr/local/bin/moodmelody",
            units[0],
        ) == {
            "/etc/moodmelody": "root:moodmelody 770",
            "/etc/moodmelody/config.toml": "root:moodmelody 640",
            "/etc/moodmelody/config.example.toml": "root:root 644",
            "/var/lib/moodmelody": "moodmelody:moodmelody 700",
            "/opt/moodmelody/app": "root:root 755",
            "/opt/moodmelody/app/device/config.py": "root:root 644",
            "/opt/moodmelody/constraints.txt": "root:root 644",
            "/opt/moodmelody/bin/hotspot.sh": "root:root 755",
            "/usr/local/bin/moodmelody": "root:root 755",
            units[0]: "root:root 644",
        }
        user = box.run("getent", "passwd", "moodmelody").stdout.strip().split(":")
        assert int(user[2]) < 1000 and user[6] == "/usr/sbin/nologin", user
        assert box.run("find", "/opt/moodmelody", "!", "-user", "root").stdout == ""

        config = box.path("/etc/moodmelody/config.toml")
        edited = config.read_bytes().replace(b"0.0.0.0:8080", b"0.0.0.0:9090") + b"# mine\n"
        config.write_bytes(edited)
        upgrade = box.run("bash", f"{checkout}/provisioning/install.sh", timeout=900)
        assert config.read_bytes() == edited
        assert "keeping the existing /etc/moodmelody/config.toml" in upgrade.stdout
        assert ".local:9090" in upgrade.stdout
        lap("upgrade")

        removed = box.run("bash", f"{checkout}/provisioning/uninstall.sh")
        said = removed.stdout + removed.stderr
        assert "Error" not in said and "NMClient" not in said, said
        for gone in ("/opt/moodmelody", "/usr/local/bin/moodmelody", units[0], units[2]):
            assert not box.path(gone).exists(), gone
        assert not box.path(
            "/etc/systemd/system/multi-user.target.wants/moodmelody.service"
        ).is_symlink()
        assert config.read_bytes() == edited
        assert box.path("/var/lib/moodmelody").is_dir()  # the state folder is kept
        box.run("getent", "passwd", "moodmelody")

        box.run("bash", f"{checkout}/provisioning/uninstall.sh", "--purge")
        for gone in ("/etc/moodmelody", "/var/lib/moodmelody"):
            assert not box.path(gone).exists(), gone
        assert box.run("getent", "passwd", "moodmelody", ok=False).returncode == 2
        assert box.run("getent", "group", "moodmelody", ok=False).returncode == 2
        assert not list(box.path("/etc/systemd/system").rglob("moodmelody*"))
        lap("uninstall")
    lap("cleanup")
    print(f"{release} timings (s): {timings}")
