"""Secrets never reach a log line: a real `qa` logger with the handlers `qa.logs.install`
fits, and a real `qa serve` process whose stderr is read after logins."""

from __future__ import annotations

import io
import logging
import shutil

import pytest

from qa.logs import install
from tests.security.conftest import Client
from tests.web.conftest import start_server, stop_server


@pytest.fixture
def logged() -> io.StringIO:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("qa.test_security_logs")
    logger.addHandler(handler)
    logger.propagate = False
    install(logger)
    yield out
    logger.removeHandler(handler)


def test_a_nats_token_in_a_url_is_blanked(logged: io.StringIO) -> None:
    # NATS token auth puts the token where a user name goes (no colon, no password).
    logging.getLogger("qa.test_security_logs").warning(
        "worker w1 taking work from %s", "nats://s3cr3t-t0ken@10.0.0.5:4222")
    text = logged.getvalue()
    assert "s3cr3t-t0ken" not in text and "nats://[REDACTED]@10.0.0.5:4222" in text


def test_a_traceback_does_not_carry_the_password_of_the_url_it_failed_on(
    logged: io.StringIO,
) -> None:
    try:
        raise ConnectionError("cannot connect to NATS at nats://qa:hunter2-pw@nats:4222")
    except ConnectionError:
        logging.getLogger("qa.test_security_logs").exception("setup failed")
    text = logged.getvalue()
    assert "Traceback" in text and "ConnectionError" in text
    assert "hunter2-pw" not in text and "nats://qa:[REDACTED]@nats:4222" in text


def test_qa_serve_logs_no_password_or_session_token(hostile_db, tmp_path) -> None:
    shutil.copytree(hostile_db[0].parent, tmp_path, dirs_exist_ok=True)
    proc, url = start_server(tmp_path / "calls.db")
    try:
        for _ in range(6):  # enough to lock the account: the lock is logged
            Client(url).login("rita", "4111 1111 1111 1111 wrong")
        client = Client(url)
        assert client.login("sam")[0] == 303
        token = next(c.value for c in client.jar if c.name == "qa_session")
    finally:
        stop_server(proc)
    err = proc.stderr.read()
    assert "locked" in err  # the lock was logged, so the log was written and read
    assert "4111" not in err and "wrong" not in err and token not in err
