"""`--source` strings of the telephony kinds: what they set, and clear errors for bad ones."""

from __future__ import annotations

import pytest

from qa.errors import ConfigError
from qa.sources.audiosocket import AudioSocketSource, parse_audiosocket_url
from qa.sources.sip import SipSource, parse_sip_url
from qa.sources.spec import open_source
from qa.sources.wsmedia import WsMediaSource, parse_ws_url
from qa.types import Speaker


def test_sip_url_rules_and_options():
    options = parse_sip_url("sip://127.0.0.1:5070?agent=from:^sip:1[0-9]{3}@"
                            "&customer=X-Role:caller&join=X-Call&timeout=5&tcp=0")
    assert (options.host, options.port, options.tcp) == ("127.0.0.1", 5070, False)
    assert [(r.field, r.pattern, r.speaker) for r in options.rules] == [
        ("from", "^sip:1[0-9]{3}@", Speaker.AGENT), ("X-Role", "caller", Speaker.CUSTOMER)]
    assert options.join_header == "X-Call" and options.rtp_timeout_s == 5.0
    assert parse_sip_url("siprec://127.0.0.1:0?siprec_agent=@agents").siprec_agent == "@agents"
    assert parse_sip_url("sip://0.0.0.0:5070?address=10.0.0.5").address == "10.0.0.5"


@pytest.mark.parametrize(("spec", "field"), [
    ("sip://127.0.0.1:5070?agent=from:(", "rules"),
    ("sip://127.0.0.1:5070?agent=nocolon", "agent"),
    ("sip://127.0.0.1:5070?colour=red", "source"),
    ("sip://0.0.0.0:5070", "public_address"),
    ("audiosocket://127.0.0.1:1,2,3", "source"),
    ("audiosocket://127.0.0.1:x", "source"),
    ("ws://127.0.0.1:8090?secret=1", "source"),
])
def test_bad_specs_name_the_field(spec: str, field: str):
    with pytest.raises(ConfigError) as error:
        open_source(spec)
    assert error.value.field == field


def test_open_source_builds_each_kind_with_the_agent():
    for spec, kind in (("sip://127.0.0.1:0", SipSource), ("siprec://127.0.0.1:0", SipSource),
                       ("audiosocket://127.0.0.1:0,0", AudioSocketSource),
                       ("ws://127.0.0.1:0?insecure=1", WsMediaSource)):
        source = open_source(spec, agent_id="a-1")
        try:
            assert isinstance(source, kind) and source.options.agent_id == "a-1"
            assert source.name.split("://")[0] in ("sip", "audiosocket", "ws")
        finally:
            source.close()
    assert parse_audiosocket_url("audiosocket://127.0.0.1:9092,9093").customer_port == 9093
    assert parse_ws_url("ws://0.0.0.0:8090?token=t&audiohook_key=k").stream_token == "t"
