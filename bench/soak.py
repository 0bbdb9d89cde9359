"""`make soak`: the daemon in real time on a looped clip for a while (10 minutes by default).

Samples resident memory, threads and open file descriptors every 10 s, counts watchdog
pings (and gaps longer than the watchdog interval), and checks the mood switches against
the debounce bounds. Prints the figures and writes bench/soak.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

from bench.run import FER2013, REPO, rss_mb, threads
from tests.conftest import free_port
from tests.daemon_process import DaemonProcess, build_clip

SEGMENTS = [("happy", 20.0), (None, 15.0), ("sad", 20.0), ("angry", 20.0)]
MIN_INTERVAL_S = 30.0
WATCHDOG_S = 2.0  # WatchdogSec as the daemon sees it; pings come every half of it


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def soak(minutes: float, workdir: Path) -> dict[str, object]:
    clip = build_clip(workdir / "clip.avi", FER2013, SEGMENTS, fps=10)
    config = workdir / "config.toml"
    config.write_text(f"""
[camera]
source = "{clip}"
[mood]
time_constant_s = 1.0
dwell_s = 3.0
min_switch_interval_s = {MIN_INTERVAL_S}
absent_after_s = 8.0
[web]
listen = "127.0.0.1:{free_port()}"
[spotify]
callback_listen = "127.0.0.1:{free_port()}"
[paths]
state_dir = "{workdir / "state"}"
""")
    notify = workdir / "notify.sock"
    samples = []
    pings = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        sock.settimeout(5)
        daemon = DaemonProcess.start(
            config,
            "--loop",
            env={"NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6))},
        )
        try:
            while not sock.recv(4096).startswith(b"READY=1"):
                pass
            started = time.monotonic()
            next_sample = started
            while (now := time.monotonic()) - started < minutes * 60:
                try:
                    message = sock.recv(4096)
                except TimeoutError:
                    message = b""
                if message.startswith(b"WATCHDOG=1"):
                    pings.append(time.monotonic())
                if now >= next_sample:
                    pid = daemon.process.pid
                    samples.append((round(now - started), rss_mb(pid), threads(pid), open_fds(pid)))
                    next_sample += 10
                daemon.read()
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
    # The log's own clock: a looped clip's place in the file starts again at every pass.
    changes = [
        int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]) + int(m[4]) / 1000
        for line in daemon.lines
        if (m := re.search(r" (\d\d):(\d\d):(\d\d),(\d{3}) .*mood changed: ", line))
    ]
    gaps = [b - a for a, b in itertools.pairwise(changes)]
    ping_gaps = [b - a for a, b in itertools.pairwise(pings)]
    steady = [s for s in samples if s[0] >= 60] or samples
    duration = minutes * 60
    return {
        "minutes": minutes,
        "exit_code": code,
        "rss_mb": {
            "first_steady": steady[0][1],
            "last": steady[-1][1],
            "max": max(s[1] for s in steady),
        },
        "threads": sorted({s[2] for s in steady}),
        "open_fds": sorted({s[3] for s in steady}),
        "watchdog": {
            "pings": len(pings),
            "expected": int(duration / (WATCHDOG_S / 2)),
            "longest_gap_s": round(max(ping_gaps), 2) if ping_gaps else None,
            "missed": sum(g > WATCHDOG_S for g in ping_gaps),
        },
        "mood_changes": len(changes),
        "closest_changes_s": round(min(gaps), 1) if gaps else None,
        "bound": f"≤ {int(duration // MIN_INTERVAL_S) + 1} changes, ≥ {MIN_INTERVAL_S:g} s apart",
        "within_bounds": (not gaps or min(gaps) >= MIN_INTERVAL_S)
        and len(changes) <= duration // MIN_INTERVAL_S + 1,
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = soak(args.minutes, Path(tmp))
    out = REPO / "bench/soak.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    print(f"written to {out.relative_to(REPO)}")
    ok = result["within_bounds"] and result["watchdog"]["missed"] == 0 and result["exit_code"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
