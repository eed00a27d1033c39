"""Wire formats of the websocket media streams: Twilio Media Streams, Genesys AudioHook and
FreeSWITCH `mod_audio_stream`/`mod_audio_fork`.

Pure functions and small frozen values, no I/O: JSON text messages become `TwilioMessage` or
`AudioHookMessage` (or raise `SignallingError` naming what is wrong), binary audio becomes
int16 channels, replies are built as JSON text, and the handshake secrets are checked here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from qa._native import g711
from qa.errors import SignallingError

#: Twilio Media Streams and AudioHook carry 8 kHz G.711 µ-law.
PCMU_RATE = 8000
_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?$")


def _error(protocol: str, reason: str) -> SignallingError:
    return SignallingError(protocol, reason)


def json_object(protocol: str, text: str | bytes) -> dict[str, Any]:
    """Parses a JSON object; raises `SignallingError` for anything else."""
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _error(protocol, f"not JSON ({exc})") from None
    except RecursionError:  # `[[[[...` from a broken peer: one bad message, not a bug
        raise _error(protocol, "not JSON (nested too deep)") from None
    if not isinstance(value, dict):
        raise _error(protocol, "not a JSON object")
    return value


# -- Twilio Media Streams --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TwilioMessage:
    """One Twilio Media Streams message.

    Attributes:
        event: `connected`, `start`, `media`, `dtmf`, `mark` or `stop`.
        stream_sid: The stream's id ('' on `connected`).
        call_sid: The call's id (on `start`).
        tracks: The tracks the stream carries (on `start`: `inbound`, `outbound`).
        parameters: The `<Parameter>`s of the TwiML `<Stream>` (on `start`).
        track: `inbound` or `outbound` (on `media`, `dtmf`).
        timestamp_ms: Milliseconds from the stream's start to this chunk (on `media`).
        audio: The µ-law payload, decoded to int16 (on `media`).
        digit: The key pressed (on `dtmf`).
    """

    event: str
    stream_sid: str = ""
    call_sid: str = ""
    tracks: tuple[str, ...] = ()
    parameters: tuple[tuple[str, str], ...] = ()
    track: str = ""
    timestamp_ms: int = 0
    audio: np.ndarray | None = None
    digit: str = ""


def parse_twilio(text: str | bytes) -> TwilioMessage:
    """Parses one Twilio Media Streams text message.

    Raises:
        SignallingError: Not a JSON object, an unknown event, a media format other than
            8 kHz mono µ-law, or a missing or malformed field (named in the reason).
    """
    message = json_object("Twilio", text)
    event = message.get("event")
    sid = str(message.get("streamSid", ""))
    try:
        if event in ("connected", "mark"):
            return TwilioMessage(event, sid)
        if event == "start":
            start = message["start"]
            media_format = start.get("mediaFormat", {})
            if (media_format.get("encoding"), int(media_format.get("sampleRate", 0)),
                    int(media_format.get("channels", 0))) != ("audio/x-mulaw", PCMU_RATE, 1):
                raise _error("Twilio", f"media format {media_format} is not 8 kHz mono mu-law")
            params = start.get("customParameters") or {}
            return TwilioMessage(
                event, sid or str(start.get("streamSid", "")), str(start.get("callSid", "")),
                tuple(str(t) for t in start.get("tracks", ("inbound",))),
                tuple((str(k), str(v)) for k, v in params.items()),
            )
        if event == "media":
            media = message["media"]
            payload = base64.b64decode(media["payload"], validate=True)
            return TwilioMessage(event, sid, track=str(media.get("track", "inbound")),
                                 timestamp_ms=int(media["timestamp"]),
                                 audio=g711.ulaw_decode(payload))
        if event == "dtmf":
            dtmf = message["dtmf"]
            digit = str(dtmf["digit"])
            if digit not in list("0123456789*#ABCD"):
                raise _error("Twilio", f"bad DTMF digit {digit!r}")
            return TwilioMessage(event, sid, track=str(dtmf.get("track", "inbound_track")),
                                 digit=digit)
        if event == "stop":
            return TwilioMessage(event, sid)
    except SignallingError:
        raise
    except (KeyError, TypeError, AttributeError) as exc:
        raise _error("Twilio", f"{event} message without {exc}") from None
    except (ValueError, binascii.Error) as exc:
        raise _error("Twilio", f"bad {event} message: {exc}") from None
    raise _error("Twilio", f"unknown event {event!r}")


def twilio_signature(auth_token: str, url: str) -> str:
    """The `X-Twilio-Signature` Twilio sends with a request to `url` (no POST parameters, as
    for a Media Streams websocket): base64 of HMAC-SHA1 over the URL, keyed by the token."""
    digest = hmac.new(auth_token.encode(), url.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# -- Genesys AudioHook -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioHookMessage:
    """One AudioHook protocol (version 2) text message.

    Attributes:
        type: `open`, `ping`, `paused`, `resumed`, `discarded`, `update`, `dtmf`, `close`,
            `error`, ... (any type; the session decides what it takes).
        seq: The sender's sequence number (1, 2, ...).
        id: The session id (a UUID), the same on every message of a session.
        position: The stream position the message refers to, seconds.
        parameters: The `parameters` object.
    """

    type: str
    seq: int
    id: str
    position: float
    parameters: dict[str, Any]


def parse_duration(value: str) -> float:
    """An ISO 8601 duration as AudioHook writes positions (`PT1.5S`, `PT2M3S`) in seconds."""
    match = _DURATION.match(value or "")
    if not match or value == "PT":
        raise _error("AudioHook", f"bad duration {value!r}")
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


def parse_audiohook(text: str | bytes) -> AudioHookMessage:
    """Parses one AudioHook text message.

    Raises:
        SignallingError: Not a JSON object, a version other than "2", or a missing or
            malformed `type`, `seq`, `id` or `position`.
    """
    message = json_object("AudioHook", text)
    if message.get("version") != "2":
        raise _error("AudioHook", f"version {message.get('version')!r}, not '2'")
    kind, seq, sid = message.get("type"), message.get("seq"), message.get("id")
    if not isinstance(kind, str) or not isinstance(seq, int) or not isinstance(sid, str):
        raise _error("AudioHook", "type, seq or id missing or of the wrong type")
    parameters = message.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _error("AudioHook", "parameters is not an object")
    position = parse_duration(message["position"]) if "position" in message else 0.0
    return AudioHookMessage(kind, seq, sid, position, parameters)


def audiohook_reply(kind: str, seq: int, clientseq: int, session_id: str, *,
                    position: float | None = None,
                    parameters: dict[str, Any] | None = None) -> str:
    """A server message (`opened`, `pong`, `closed`, `disconnect`) as JSON text."""
    message: dict[str, Any] = {"version": "2", "type": kind, "seq": seq,
                               "clientseq": clientseq, "id": session_id}
    if position is not None:
        message["position"] = f"PT{position:.3f}S"
    message["parameters"] = parameters or {}
    return json.dumps(message)


def choose_audiohook_media(offers: Any) -> dict[str, Any]:
    """Picks the offered media to accept: PCMU at 8 kHz, stereo (external + internal) first.

    Raises:
        SignallingError: No offer is PCMU at 8 kHz.
    """
    usable = [m for m in offers if isinstance(m, dict) and m.get("type") == "audio"
              and m.get("format") == "PCMU" and m.get("rate") == PCMU_RATE
              and isinstance(m.get("channels"), list) and m["channels"]
              and set(m["channels"]) <= {"external", "internal"}] if isinstance(offers, list) \
        else []
    if not usable:
        raise _error("AudioHook", "no PCMU 8 kHz media offered")
    return max(usable, key=lambda m: len(m["channels"]))


# -- binary audio --------------------------------------------------------------------------


def split_channels(pcm: np.ndarray, channels: int) -> list[np.ndarray]:
    """De-interleaves int16 samples into `channels` arrays (a trailing partial frame is cut)."""
    frames = len(pcm) // channels
    shaped = pcm[: frames * channels].reshape(frames, channels)
    return [np.ascontiguousarray(shaped[:, index]) for index in range(channels)]


def decode_l16(data: bytes) -> np.ndarray:
    """Signed 16-bit little-endian PCM (what mod_audio_stream/mod_audio_fork send).

    Raises:
        SignallingError: An odd number of bytes.
    """
    if len(data) % 2:
        raise _error("L16", f"odd byte count {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def check_secret(expected: str, given: str) -> bool:
    """Constant-time comparison of a configured secret with one a peer presented."""
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())
