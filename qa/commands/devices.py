"""`qa devices`: the sound-card inputs PortAudio can record from."""

from __future__ import annotations

import argparse
import json

from qa.sources.soundcard import list_input_devices


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `qa devices`."""
    parser = subparsers.add_parser(
        "devices",
        help="list sound-card input devices",
        description="List the input devices PortAudio sees; use the index or name with "
        "`qa run --source soundcard:DEVICE`.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per device")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Prints one line per input device; returns the exit status (1 when there is none)."""
    devices = list_input_devices()
    if args.json:
        for d in devices:
            print(
                json.dumps(
                    {
                        "index": d.index,
                        "name": d.name,
                        "max_input_channels": d.max_input_channels,
                        "default_samplerate": d.default_samplerate,
                        "hostapi": d.hostapi,
                    },
                    ensure_ascii=False,
                )
            )
        return 0 if devices else 1
    if not devices:
        print("no input devices found")
        return 1
    print(f"{'index':>5}  {'channels':>8}  {'rate':>7}  {'host API':<10}  name")
    for d in devices:
        print(
            f"{d.index:>5}  {d.max_input_channels:>8}  {d.default_samplerate:>7.0f}  "
            f"{d.hostapi:<10}  {d.name}"
        )
    return 0
