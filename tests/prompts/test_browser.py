"""The agent page in a real headless Chromium (Debian's `chromium`), driven over CDP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa.prompts import PromptListener, PromptOptions, PromptServer
from qa.types import Event, EventKind, Segment, Severity, Speaker
from tests.prompts.cdp import Browser
from tests.prompts.conftest import TOKENS, call_info

SCREENSHOT = Path("/tmp/agent_page.png")
PROMPT_TEXTS = "[...document.querySelectorAll('#prompts .prompt .text')].map(e => e.textContent)"
CONNECTED = "document.getElementById('status').dataset.state === 'connected'"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = Browser()
    try:
        yield chromium
    finally:
        chromium.close()


def _open_page(browser: Browser, server: PromptServer, agent: str, token: str) -> None:
    browser.navigate(server.page_url(agent, token))
    browser.wait_for(CONNECTED, timeout=10)


def _wait_for_prompt(browser: Browser, text: str) -> float:
    """Seconds from now until a prompt with `text` is in the page's DOM (fails after 5 s)."""
    start = time.monotonic()
    browser.wait_for(f"{PROMPT_TEXTS}.includes({json.dumps(text)})", timeout=5)
    return time.monotonic() - start


def test_page_shows_prompt_when_emitted(
    browser: Browser, server: PromptServer, listener: PromptListener
) -> None:
    agent, token = TOKENS[0]
    listener.call_started(call_info("call-77", agent))
    _open_page(browser, server, agent, token)
    assert browser.evaluate("document.getElementById('call').textContent") == (
        "Call call-77 in progress"
    )

    listener.segment(
        Segment("call-77", Speaker.CUSTOMER, 3.0, 5.5, "my number is 415-555-1234",
                language="en"), 0.4)
    emitted = time.monotonic()
    listener.event(Event(
        "call-77", 15.0, EventKind.STEP_MISSED, "verify-identity", Severity.CRITICAL, -10,
        "customer gave 415-555-1234", "Verify the caller's identity now",
    ))
    browser.wait_for(f"{PROMPT_TEXTS}.includes(\"Verify the caller's identity now\")", 5)
    delay = time.monotonic() - emitted
    # Pushed, not polled: it appears without a reload. How fast (the product's 1 s goal) is a
    # timing that depends on the machine and its load, so it is printed, not asserted.
    print(f"emit -> visible in Chromium: {delay * 1000:.0f} ms")

    prompt = browser.evaluate(
        "(() => { const p = document.querySelector('#prompts .prompt');"
        " return {cls: p.className, evidence: p.querySelector('.evidence').textContent,"
        " meta: p.querySelector('.meta').textContent,"
        " color: getComputedStyle(p.querySelector('.text')).color}; })()"
    )
    assert "alarm" in prompt["cls"] and "critical" in prompt["cls"]
    assert prompt["color"] == "rgb(198, 40, 40)"  # missed steps are red
    assert prompt["evidence"] == "\u201ccustomer gave [PHONE]\u201d"
    assert prompt["meta"] == "Step missed · 0:15 · verify-identity"
    line = browser.evaluate("document.querySelector('#transcript li').textContent")
    assert line == "0:03customermy number is [PHONE]"


def test_page_renders_text_not_html_and_newest_first(
    browser: Browser, server: PromptServer, listener: PromptListener
) -> None:
    agent, token = TOKENS[0]
    listener.call_started(call_info("call-78", agent))
    _open_page(browser, server, agent, token)
    listener.segment(Segment("call-78", Speaker.AGENT, 1.0, 2.8,
                             "Thank you for calling, this is Sam.", language="en"), 0.3)
    listener.segment(Segment("call-78", Speaker.CUSTOMER, 3.1, 6.0,
                             "Hi, my order never arrived, this is not good enough.",
                             language="en"), 0.3)
    listener.event(Event("call-78", 20.0, EventKind.STEP_DUE, "greeting", Severity.WARNING,
                         message="Greet the customer"))
    hostile = "<img src=x onerror=\"document.title='owned'\"><b>stop</b>"
    listener.event(Event("call-78", 21.0, EventKind.FORBIDDEN_PHRASE, "shirking",
                         Severity.CRITICAL, -5, "not my problem", hostile))
    _wait_for_prompt(browser, hostile)
    assert browser.evaluate(PROMPT_TEXTS) == [hostile, "Greet the customer"]
    assert browser.evaluate("document.querySelectorAll('#prompts img, #prompts b').length") == 0
    assert browser.evaluate("document.title") == "Agent prompts"
    assert browser.evaluate("document.querySelectorAll('#transcript li').length") == 2
    browser.screenshot(SCREENSHOT)
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_reconnects_after_server_restart(browser: Browser) -> None:
    agent, token = TOKENS[1]
    first = PromptServer(PromptOptions(port=0, tokens=TOKENS))
    first.start()
    port = first.port
    try:
        _open_page(browser, first, agent, token)
    finally:
        first.stop()
    browser.wait_for("document.getElementById('status').dataset.state === 'disconnected'", 5)

    with PromptServer(PromptOptions(port=port, tokens=TOKENS)) as second:
        browser.wait_for(CONNECTED, timeout=10)
        listener = PromptListener(second)
        listener.call_started(call_info("call-79", agent))
        listener.event(Event("call-79", 240.0, EventKind.HANDLE_TIME_WARNING, "handle-time",
                             Severity.WARNING, message="4:00 elapsed: wrap up or transfer"))
        _wait_for_prompt(browser, "4:00 elapsed: wrap up or transfer")
        assert browser.evaluate("document.getElementById('call').textContent") == (
            "Call call-79 in progress"
        )
