"""The `moodmelody` command's answers to a user's mistakes: a line that says what, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.cli import main


def bad_model_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text('[models]\nemotion = "models/nope.tflite"\n[camera]\nenabled = false\n')
    return config


def test_detect_with_a_missing_model_says_which_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed a traceback from deep in the classifier."""
    image = tmp_path / "x.png"
    assert main(["detect", "--config", str(bad_model_config(tmp_path)), str(image)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith('error: models: [models] emotion = "models/nope.tflite": no such file')


def test_check_names_the_models_key_not_the_derived_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--config", str(bad_model_config(tmp_path))]) == 1
    (models,) = [line for line in capsys.readouterr().out.splitlines() if " models:" in line]
    assert models.startswith('FAIL models: [models] emotion = "models/nope.tflite"'), models
    assert "nope.json" not in models


def test_a_model_without_its_metadata_is_said_by_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "mine.tflite"
    model.write_bytes(b"not read")
    config = tmp_path / "config.toml"
    config.write_text(f'[models]\nemotion = "{model}"\n[camera]\nenabled = false\n')
    assert main(["check", "--config", str(config)]) == 1
    (models,) = [line for line in capsys.readouterr().out.splitlines() if " models:" in line]
    assert models == (
        f'FAIL models: [models] emotion = "{model}": its metadata mine.json is missing beside it'
    )


@pytest.mark.parametrize("command", [["check"], ["detect", "x.png"], ["run"], ["login"]])
def test_an_explicit_config_that_is_not_there_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """`--config /etc/moodmelody/confg.toml` (a typo) was "ok … not found: defaults"."""
    missing = tmp_path / "confg.toml"
    code = main([command[0], "--config", str(missing), *command[1:]])
    out = capsys.readouterr()
    assert code != 0
    assert f"{missing}: " in out.out + out.err and "no such file" in out.out + out.err
    assert "defaults" not in out.out.replace("leave out --config for the defaults", "")


@pytest.mark.parametrize("frames", ["-1", "0", "many"])
def test_detect_refuses_a_frame_count_below_one(
    capsys: pytest.CaptureFixture[str], frames: str
) -> None:
    """`--frames -1` printed nothing and exited 0."""
    with pytest.raises(SystemExit) as stopped:
        main(["detect", "--frames", frames, "x.png"])
    assert stopped.value.code == 2
    assert "--frames: expected a whole number of at least 1" in capsys.readouterr().err
