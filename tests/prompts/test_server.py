"""The prompt server over real sockets: tokens, binding, delivery, redaction, isolation."""

from __future__ import annotations

import http.client
import json
import socket

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from qa.errors import PromptServerError
from qa.prompts import PromptListener, PromptOptions, PromptServer
from qa.types import Event, EventKind, Segment, Severity, Speaker
from tests.prompts.conftest import TOKENS, call_info

AGENT, TOKEN = TOKENS[0]
OTHER, OTHER_TOKEN = TOKENS[1]


def _get(server: PromptServer, target: str) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", target)
        reply = conn.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        conn.close()


def _socket(server: PromptServer, agent: str, token: str) -> ClientConnection:
    return connect(f"ws://127.0.0.1:{server.port}/ws/{agent}?token={token}", open_timeout=5)


def _recv(ws: ClientConnection) -> dict:
    return json.loads(ws.recv(timeout=5))


def test_binds_loopback_by_default(server: PromptServer) -> None:
    assert PromptOptions().host == "127.0.0.1"
    assert server._server is not None
    assert server._server.sockets[0].getsockname()[0] == "127.0.0.1"
    # Linux answers on all of 127/8; a server bound to every address would accept this.
    with pytest.raises(ConnectionRefusedError), socket.create_connection(
        ("127.0.0.2", server.port), timeout=1
    ):
        pass


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (f"/agent/{AGENT}", 401),
        (f"/agent/{AGENT}?token=", 401),
        (f"/agent/{AGENT}?token=wrong", 403),
        (f"/agent/{AGENT}?token={OTHER_TOKEN}", 403),  # another agent's token
        (f"/agent/nobody?token={TOKEN}", 403),
        (f"/other?token={TOKEN}", 404),
    ],
)
def test_page_refused_without_valid_token(server: PromptServer, target: str, status: int) -> None:
    got, _, body = _get(server, target)
    assert got == status
    assert b"<html" not in body


def test_page_served_with_token(server: PromptServer) -> None:
    status, headers, body = _get(server, f"/agent/{AGENT}?token={TOKEN}")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "connect-src 'self'" in headers["Content-Security-Policy"]
    assert b'<ol id="prompts">' in body
    # Self-contained: nothing fetched from elsewhere.
    assert b"http://" not in body and b"https://" not in body and b"src=" not in body


@pytest.mark.parametrize(
    ("token", "status"), [("", 401), ("wrong", 403), (OTHER_TOKEN, 403)]
)
def test_socket_refused_without_valid_token(server: PromptServer, token: str, status: int) -> None:
    with pytest.raises(InvalidStatus) as refused:
        _socket(server, AGENT, token)
    assert refused.value.response.status_code == status


def test_event_reaches_agent_redacted(server: PromptServer, listener: PromptListener) -> None:
    listener.call_started(call_info("call-1", AGENT))
    with _socket(server, AGENT, TOKEN) as ws:
        assert _recv(ws)["type"] == "call_started"  # replayed history
        listener.event(Event(
            "call-1", 42.25, EventKind.FORBIDDEN_PHRASE, "no-shirking", Severity.CRITICAL, -5,
            "not my problem, call 13812345678", "Do not refuse: take details for 13812345678",
            Speaker.AGENT,
        ))
        assert _recv(ws) == {
            "type": "prompt", "call": "call-1", "kind": "forbidden_phrase", "time": 42.25,
            "rule": "no-shirking", "severity": "critical", "speaker": "agent", "points": -5,
            "message": "Do not refuse: take details for [PHONE]",
            "evidence": "not my problem, call [PHONE]",
            "match": "", "score": None, "example": "",
        }
        listener.segment(Segment("call-1", Speaker.CUSTOMER, 1.0, 2.5,
                                 "my card is 4111 1111 1111 1111", language="en"), 0.3)
        line = _recv(ws)
        assert line["type"] == "transcript" and line["text"] == "my card is [CARD]"
        assert (line["speaker"], line["start"], line["end"]) == ("customer", 1.0, 2.5)


def test_messages_only_reach_the_calls_agent(
    server: PromptServer, listener: PromptListener
) -> None:
    listener.call_started(call_info("call-a", AGENT))
    listener.call_started(call_info("call-b", OTHER))
    with _socket(server, AGENT, TOKEN) as mine, _socket(server, OTHER, OTHER_TOKEN) as theirs:
        assert _recv(mine)["call"] == "call-a"
        assert _recv(theirs)["call"] == "call-b"
        listener.event(Event("call-a", 5.0, EventKind.STEP_DUE, "greeting", message="Greet"))
        listener.event(Event("call-b", 6.0, EventKind.STEP_DUE, "greeting", message="Hello"))
        # Messages arrive in order per agent, so the other agent's next message being its own
        # proves the first one never reached it.
        assert _recv(theirs)["message"] == "Hello"
        assert _recv(mine)["message"] == "Greet"


def test_filters_kinds_and_skips_partials(server: PromptServer, listener: PromptListener) -> None:
    listener.call_started(call_info("call-2", AGENT))
    with _socket(server, AGENT, TOKEN) as ws:
        _recv(ws)
        listener.event(Event("call-2", 3.0, EventKind.STEP_DONE, "greeting"))
        listener.segment(Segment("call-2", Speaker.AGENT, 0.0, 1.0, "hel", final=False), 0.1)
        listener.event(Event("call-2", 300.0, EventKind.HANDLE_TIME_BREACH, "handle-time",
                             Severity.CRITICAL))
        prompt = _recv(ws)
        assert prompt["kind"] == "handle_time_breach"
        assert prompt["message"] == "Handle time exceeded: transfer to the specialist line"


def test_history_replayed_and_call_ended(server: PromptServer, listener: PromptListener) -> None:
    listener.call_started(call_info("call-3", AGENT))
    listener.event(Event("call-3", 15.0, EventKind.STEP_MISSED, "greeting",
                         Severity.WARNING, message="Greet the customer"))
    with _socket(server, AGENT, TOKEN) as ws:
        assert [_recv(ws)["type"], _recv(ws)["message"]] == ["call_started", "Greet the customer"]


def test_redaction_can_be_turned_off_and_transcript_too() -> None:
    options = PromptOptions(port=0, tokens=TOKENS, redact=False, transcript=False)
    with PromptServer(options) as server:
        listener = PromptListener(server)
        listener.call_started(call_info("call-4", AGENT))
        with _socket(server, AGENT, TOKEN) as ws:
            _recv(ws)
            listener.segment(Segment("call-4", Speaker.AGENT, 0.0, 1.0, "hi"), 0.1)
            listener.event(Event("call-4", 9.0, EventKind.STEP_DUE, "callback",
                                 evidence="415-555-1234", message="Confirm the number"))
            prompt = _recv(ws)
            assert (prompt["type"], prompt["evidence"]) == ("prompt", "415-555-1234")


def test_agent_without_token_gets_nothing(server: PromptServer) -> None:
    assert not server.publish("agent-9", {"type": "prompt"})
    assert server.publish(AGENT, {"type": "prompt"})


def test_port_in_use_is_a_clear_error(server: PromptServer) -> None:
    with pytest.raises(PromptServerError, match=f"127.0.0.1:{server.port}"):
        PromptServer(PromptOptions(port=server.port, tokens=TOKENS)).start()
