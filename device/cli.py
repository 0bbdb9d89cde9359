"""The `moodmelody` command: run the daemon, check the set-up, try detection, log in."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from device import __version__
from device.config import Config, ConfigError, default_config_path, load_config, save_config

logger = logging.getLogger("moodmelody")

WAIT_FOR_FIX_S = 5.0


def setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    if os.environ.get("JOURNAL_STREAM"):  # journald adds the time and the unit itself
        fmt = "%(levelname)s %(name)s: %(message)s"
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)


def _config_path(args: argparse.Namespace) -> Path:
    """The config file: `--config`, which must exist (a typo in a path is not a request for
    the defaults), else the default one, whose absence means the defaults."""
    if not args.config:
        return default_config_path()
    path = Path(args.config)
    if not path.exists():
        raise ConfigError(str(path), "(file)", "no such file (leave out --config for the defaults)")
    return path


def last_good_path(path: Path) -> Path:
    """Where the last good copy of the config file `path` is kept: beside it, so that each
    config has its own fallback (two daemons, or the tests, never share one)."""
    return path.with_name(f"{path.stem}.last-good{path.suffix or '.toml'}")


def load_for_service(path: Path) -> Config:
    """The config to run with. A broken file must not make the service crash-loop:
    run with the last good config if there is one, else wait here until the file is fixed.
    """
    stop = threading.Event()
    last_good = last_good_path(path)
    while True:
        try:
            config = load_config(path)
        except ConfigError as err:
            for line in err.lines():
                logger.error("configuration error: %s", line)
            if last_good.exists():
                try:
                    config = load_config(last_good)
                except ConfigError:
                    pass
                else:
                    logger.error(
                        "running with the last good configuration (%s) until %s is "
                        "fixed; then send SIGHUP or restart",
                        last_good,
                        path,
                    )
                    return config
            logger.error("waiting for %s to be fixed (checking every %g s)", path, WAIT_FOR_FIX_S)
            stop.wait(WAIT_FOR_FIX_S)
            continue
        if path.exists():
            try:
                save_config(config, last_good)
            except OSError as err:
                logger.warning("cannot keep the last good configuration at %s: %s", last_good, err)
        return config


def cmd_run(args: argparse.Namespace) -> int:
    from device.controller import Controller
    from device.daemon import Daemon, RunOptions
    from device.status import StatusBoard

    path = _config_path(args)
    config = load_for_service(path)
    overlay = {"camera": {"source": args.source}} if args.source else {}
    controller = Controller(config, path, StatusBoard(), overlay)
    logger.info(
        "Mood Melody %s, config %s%s, state in %s",
        __version__,
        path,
        "" if path.exists() else " (not found: defaults)",
        controller.config.state_dir(),
    )
    daemon = Daemon(controller, RunOptions(fast=args.fast, loop=args.loop))
    return daemon.run()


def cmd_detect(args: argparse.Namespace) -> int:
    from device.camera import CameraError, open_source
    from device.checks import missing_model
    from device.pipeline import Analyser
    from device.placement import advice, face_distance_m

    config = load_config(_config_path(args))
    try:
        if problem := missing_model(config):
            raise FileNotFoundError(problem)
        analyser = Analyser.from_config(config)
    except Exception as err:  # a missing or broken model, no TFLite runtime
        print(f"error: models: {err}", file=sys.stderr)
        return 1
    try:
        source = open_source(
            args.source,
            config.camera.width,
            config.camera.height,
            config.camera.fps,
            realtime=not args.fast,
        )
    except CameraError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    shown = 0
    try:
        while args.frames is None or shown < args.frames:
            frame = source.read()
            if frame is None:
                break
            started = time.perf_counter()
            results = analyser.analyse(frame.rgb, None if frame.still else frame.timestamp)
            elapsed_ms = (time.perf_counter() - started) * 1000
            height, width = frame.rgb.shape[:2]
            hfov = config.camera.hfov_deg
            faces = [
                {
                    "box": [
                        round(r.face.x),
                        round(r.face.y),
                        round(r.face.width),
                        round(r.face.height),
                    ],
                    "score": round(r.face.score, 3),
                    "distance_m": round(face_distance_m(r.face.width, width, hfov), 1),
                    "advice": advice(r.face, width, height, hfov),
                    "emotion": analyser.labels[int(r.prediction.probabilities.argmax())],
                    "scores": {
                        label: round(float(p), 3)
                        for label, p in zip(
                            analyser.labels, r.prediction.probabilities, strict=True
                        )
                    },
                }
                for r in results
            ]
            record = {
                "frame": frame.index,
                # a file's frame: its place in the file; a camera's: the wall-clock time
                "time": round(frame.clip_time if frame.clip_time is not None else time.time(), 3),
                "ms": round(elapsed_ms, 2),
                "faces": faces,
            }
            if args.json:
                print(json.dumps(record), flush=True)
            else:
                summary = (
                    ", ".join(
                        f"{f['emotion']} {max(f['scores'].values()):.0%} at {f['box']} "
                        f"~{f['distance_m']:g} m" + "".join(f" ({note})" for note in f["advice"])
                        for f in faces
                    )
                    or "no face"
                )
                when = (
                    f"{frame.clip_time:9.3f}s"
                    if frame.clip_time is not None
                    else time.strftime("%H:%M:%S")
                )
                print(f"{when}  {summary}  ({elapsed_ms:.1f} ms)", flush=True)
            shown += 1
    finally:
        source.close()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from device.checks import run_checks

    if args.config:
        lines = run_checks(Path(args.config), explicit=True)
    else:
        lines = run_checks(default_config_path())
    for name, ok, message in lines:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {message}")
    return 0 if all(ok for _, ok, _ in lines) else 1


def cmd_login(args: argparse.Namespace) -> int:
    from device.spotify_auth import login_command

    config = load_config(_config_path(args))
    return login_command(config, config.state_dir(), sys.stdin, sys.stdout)


def cmd_reset_password(args: argparse.Namespace) -> int:
    from web_config.auth import reset_password

    config = load_config(_config_path(args))
    code = reset_password(config.state_dir())
    print(
        f"The admin password is forgotten. Open the setup page and choose a new one with "
        f"the setup code {code}."
    )
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    """Remove this device from Home Assistant and from its Spotify account's Mood Melodies."""
    from device.coordination import account_key
    from device.identity import device_id
    from device.mqtt import forget
    from device.spotify_auth import SpotifyAuth

    config = load_config(_config_path(args))
    if not config.mqtt.enabled:
        print("MQTT is off: this device left nothing on a broker.")
        return 0
    state_dir = config.state_dir()
    account = SpotifyAuth(config, state_dir).account()
    ok, message = forget(
        config, device_id(state_dir), account_key(account.user_id) if account else ""
    )
    print(message if ok else f"could not clear the broker: {message}")
    return 0 if ok else 1


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moodmelody", description=__doc__)
    parser.add_argument("--version", action="version", version=f"moodmelody {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--config", help="config file (default: " + str(default_config_path()) + ")"
        )
        return sub

    run = add("run", "run the daemon")
    run.add_argument("--source", help="override [camera] source for this run")
    run.add_argument(
        "--fast",
        action="store_true",
        help="replay a video file or image folder flat out (media time as clock)",
    )
    run.add_argument("--loop", action="store_true", help="replay a file forever")
    run.set_defaults(handler=cmd_run)

    detect = add("detect", "detect faces and emotions in an image folder, video or camera")
    detect.add_argument(
        "source", help="image, folder, video file, stream URL, /dev/videoN, picamera2 or auto"
    )
    detect.add_argument("--json", action="store_true", help="one JSON object per frame")
    detect.add_argument("--fast", action="store_true", help="do not pace files in real time")
    detect.add_argument("--frames", type=_positive, help="stop after this many frames")
    detect.set_defaults(handler=cmd_detect)

    add("check", "check camera, models, runtime, config, Spotify, MQTT").set_defaults(
        handler=cmd_check
    )
    add("login", "link a Spotify account from a terminal").set_defaults(handler=cmd_login)
    add(
        "reset-password", "forget the setup page's admin password (prints a new setup code)"
    ).set_defaults(handler=cmd_reset_password)
    add(
        "forget", "remove this device from Home Assistant: clear what it left on the MQTT broker"
    ).set_defaults(handler=cmd_forget)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return args.handler(args)
    except ConfigError as err:
        for line in err.lines():
            print(f"configuration error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
