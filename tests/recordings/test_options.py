"""Recording settings from the config file and the `qa run` command line, built once at the
edge into `RecordingOptions`; bad values name the file, line and field."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from qa.commands import run as run_command
from qa.config import load_config
from qa.errors import ConfigError
from qa.recordings import RecordingOptions


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    run_command.register(parser.add_subparsers())
    return parser.parse_args(["run", "--source", "file:x.wav", *argv])


def test_config_file_sets_recording(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("sources: [file:x.wav]\nrecording: true\nrecording_dir: /srv/rec\n"
                    "retention_days: 30\nrecording_codec: opus\n")
    options = run_command.monitor_options(load_config(path)).recordings
    assert options == RecordingOptions(enabled=True, directory=Path("/srv/rec"),
                                       retention_days=30, codec="opus")


@pytest.mark.parametrize(("text", "field"), [
    ("retention_days: -3\n", "retention_days"),
    ("recording_codec: mp3\n", "recording_codec"),
    ("recording: maybe\n", "recording"),
])
def test_bad_recording_settings_name_the_field(tmp_path: Path, text: str, field: str):
    path = tmp_path / "run.yaml"
    path.write_text("sources: [file:x.wav]\n" + text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert error.value.field == field and error.value.line == 2


def test_command_line_overrides_and_defaults():
    default = run_command.monitor_options(run_command.settings(parse())).recordings
    assert default == RecordingOptions()  # on, beside the store, 90 days, FLAC
    options = run_command.monitor_options(run_command.settings(parse(
        "--no-recording", "--recording-dir", "/tmp/r", "--retention-days", "7"))).recordings
    assert (options.enabled, options.directory, options.retention_days) == (
        False, Path("/tmp/r"), 7)
    # Without a store nothing is kept, unless a recording folder is named.
    assert run_command.monitor_options(run_command.settings(parse("--no-store"))).recordings \
        is None
    named = run_command.settings(parse("--no-store", "--recording-dir", "/tmp/r"))
    assert run_command.monitor_options(named).recordings.directory == Path("/tmp/r")
