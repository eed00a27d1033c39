"""Source specifications as the command line and config files write them.

    soundcard[:DEVICE]            a sound card (stereo: left = agent, right = customer)
    soundcard:AGENT+CALL          two devices: the agent's microphone and the call audio
    rtp://HOST:PORT[,PORT2]       RTP/G.711 streams (PORT = agent, PORT2 = customer)
    file:PATH[?realtime=1]        a WAV file replayed as a call
    sip://HOST:PORT[?OPTIONS]     a SIP user agent that answers calls (docs/telephony.md)
    siprec://HOST:PORT[?OPTIONS]  the same user agent as a SIPREC recording server
    audiosocket://HOST:PORT[,PORT2]  Asterisk AudioSocket legs joined by UUID (docs/telephony.md)
    ws://HOST:PORT[?OPTIONS]      Twilio, Genesys AudioHook, FreeSWITCH media streams
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

from qa.errors import ConfigError
from qa.sources.base import Source


def open_source(spec: str, *, agent_id: str = "") -> Source:
    """Builds the source a specification names.

    Args:
        spec: One of the forms in this module's docstring.
        agent_id: The agent recorded on the calls this source produces.

    Returns:
        A ready `Source` (files are read, so a bad file fails here, before anything starts).

    Raises:
        ConfigError: The specification is malformed.
        AudioFileError, SourceError: The file or device cannot be used.
    """
    if spec == "soundcard" or spec.startswith("soundcard:"):
        from qa.sources.soundcard import SoundcardOptions, SoundcardSource

        # '+' joins two devices: ALSA names use ':' and ',' themselves ("hw:0,0").
        names = spec.partition(":")[2].split("+")
        if len(names) > 2 or (len(names) == 2 and not all(names)):
            raise ConfigError(spec, "expected soundcard[:DEVICE] or soundcard:AGENT+CALL",
                              field="source")
        devices = [int(name) if name.isdigit() else (name or None) for name in names]
        return SoundcardSource(SoundcardOptions(
            device=devices[0], second_device=devices[1] if len(devices) == 2 else None,
            agent_id=agent_id,
        ))
    if spec.startswith("rtp://"):
        from dataclasses import replace

        from qa.sources.rtp import RtpSource, parse_rtp_url

        options = parse_rtp_url(spec)
        return RtpSource(replace(options, agent_id=agent_id) if agent_id else options)
    if spec.startswith("file:"):
        from qa.sources.file import FileOptions, FileSource

        path, _, query = spec[len("file:") :].partition("?")
        params = parse_qs(query)
        unknown = set(params) - {"realtime"}
        if unknown or not path:
            raise ConfigError(spec, "expected file:PATH[?realtime=1]", field="source")
        realtime = params.get("realtime", ["0"])[-1] in ("1", "true", "yes")
        return FileSource(FileOptions(Path(path), realtime=realtime, agent_id=agent_id))
    if spec.startswith(("sip://", "siprec://")):
        from dataclasses import replace

        from qa.sources.sip import SipSource, parse_sip_url

        sip_options = parse_sip_url(spec)
        return SipSource(replace(sip_options, agent_id=agent_id) if agent_id else sip_options)
    if spec.startswith("audiosocket://"):
        from dataclasses import replace

        from qa.sources.audiosocket import AudioSocketSource, parse_audiosocket_url

        audiosocket_options = parse_audiosocket_url(spec)
        return AudioSocketSource(
            replace(audiosocket_options, agent_id=agent_id) if agent_id else audiosocket_options
        )
    if spec.startswith("ws://"):
        from dataclasses import replace

        from qa.sources.wsmedia import WsMediaSource, parse_ws_url

        ws_options = parse_ws_url(spec)
        return WsMediaSource(replace(ws_options, agent_id=agent_id) if agent_id else ws_options)
    raise ConfigError(
        spec,
        "unknown source; expected soundcard[:DEVICE], rtp://HOST:PORT[,PORT2], "
        "file:PATH[?realtime=1], sip://HOST:PORT, audiosocket://HOST:PORT or ws://HOST:PORT",
        field="source",
    )
