"""Where a call's audio comes from: the one place the web app asks for a recording.

The recordings module (`qa.recordings`, issue 13 item 1) keeps each call's audio, masked
where the transcript was redacted, and the call store answers `recording(call_id)`. A store
without that method (an older schema) has no recordings, and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qa.store import CallStore

__all__ = ["Audio", "recording_file"]

#: Content types of the codecs a recording may use.
_TYPES = {"flac": "audio/flac", "opus": "audio/ogg", "wav": "audio/wav"}


@dataclass(frozen=True, slots=True)
class Audio:
    """A call's playable recording: the file and its content type."""

    path: Path
    content_type: str


def recording_file(store: CallStore, call_id: str) -> Audio | None:
    """The call's recording if one is kept and its file exists, else None."""
    lookup = getattr(store, "recording", None)
    if lookup is None:
        return None
    recording = lookup(call_id)
    if recording is None:
        return None
    path = Path(recording.path)
    if not path.is_file():
        return None
    return Audio(path, _TYPES.get(recording.codec, "application/octet-stream"))
