"""`qa transcribe FILE`: a recording through the live path (front end + transcriber) to text.

Plain output is one line per segment, `[MM:SS.ss-MM:SS.ss] speaker: text`, times on the call
clock (minutes keep counting past 59); `--json` writes one JSON object per line with `start`,
`end` (seconds), `speaker`, `text` and `language`.
"""

from __future__ import annotations

import argparse

from qa.commands._output import dumps, segment_line
from qa.models import DEFAULT_MODEL


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `qa transcribe`."""
    parser = subparsers.add_parser(
        "transcribe", help="transcribe a recording (stereo: agent/customer)"
    )
    parser.add_argument("file", help="WAV (PCM, float, A-law, mu-law), FLAC, Ogg/Opus, MP3 or M4A; "
                        "mono or stereo (left = agent)")
    parser.add_argument(
        "--language", choices=("en", "zh", "auto"), default="auto",
        help="spoken language; auto detects it per utterance (slower)",
    )  # fmt: skip
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help="installed model name or model directory"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Transcribes the file and prints its segments; returns the exit status."""
    from qa.asr import Transcriber, TranscriberOptions
    from qa.offline import transcribe_file
    from qa.sources.audio import open_audio

    # Check the file before loading the model so a bad file fails fast.
    wav = open_audio(args.file)
    language = None if args.language == "auto" else args.language
    transcriber = Transcriber(TranscriberOptions(model=args.model, language=language))
    for seg in transcribe_file(wav, transcriber, language=language):
        if args.json:
            record = {
                "start": seg.start,
                "end": seg.end,
                "speaker": str(seg.speaker),
                "text": seg.text,
                "language": seg.language,
            }
            print(dumps(record), flush=True)
        else:
            print(segment_line(seg), flush=True)
    return 0
