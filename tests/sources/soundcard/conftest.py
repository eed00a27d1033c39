"""Fixtures for the sound-card tests: one private PulseAudio server with a 48 kHz stereo null sink.

48 kHz (not 16) so that the captured chunks take the front end's resampling path, as a real
sound card's would.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pulse import PulseServer
from tests.sources.soundcard.support import SINK_RATE


@pytest.fixture(scope="session")
def pulse() -> Iterator[PulseServer]:
    """A running private PulseAudio; this process's PortAudio records its `out.monitor`."""
    server = PulseServer(sink="out", rate=SINK_RATE, channels=2).start()
    server.activate()
    try:
        yield server
    finally:
        server.deactivate()
        server.stop()
