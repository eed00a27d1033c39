"""A flood of SIP requests over real UDP: the responses kept to answer retransmissions are
bounded, the drops are counted, and the agent still answers."""

from __future__ import annotations

import socket
import tracemalloc

from tests.sources.telephony.conftest import sip_source  # noqa: F401 (the fixture)

#: What the agent keeps at most (`qa.sources.sip.ua._CACHE_BYTES`, 4 MiB).
KEPT = 4 << 20
PAD = 30_000  # a Via parameter: the response copies it


def _options(n: int, port: int, sock: socket.socket, pad: str) -> None:
    sock.sendto((f"OPTIONS sip:qa@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;"
                 f"branch=z9hG4bK{n};pad={pad}\r\nFrom: <sip:a@b>;tag={n}\r\nTo: <sip:qa@b>\r\n"
                 f"Call-ID: flood-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode(),
                ("127.0.0.1", port))


def test_a_flood_of_new_call_ids_keeps_bounded_responses(sip_source):  # noqa: F811
    # Each response copies the request's 30 KB Via; kept 32 s each, 1,000 of them were 30 MB
    # (140 MB in 10 s at the rate a single sender reaches here), without any bound.
    source = sip_source()
    count = 600
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        pad = "x" * PAD
        for n in range(count):
            _options(n, source.port, sock, pad)
            assert sock.recv(65535).startswith(b"SIP/2.0 200 OK")  # one at a time: none lost
        # The newest response is still kept: its retransmission is answered from the cache.
        _options(count - 1, source.port, sock, pad)
        assert sock.recv(65535).startswith(b"SIP/2.0 200 OK")
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        # 600 responses of 30 KB are 18 MB; the bound keeps 4 MiB of them (was 36 MB with copies).
        assert grown < 3 * KEPT, f"{grown / 1e6:.1f} MB kept"
        stats = source.source.stats()
        assert stats["requests"] == count + 1 and stats["retransmissions"] == 1
        assert stats["cache_evictions"] >= count - KEPT // PAD
        # Still answering new requests.
        _options(count + 1, source.port, sock, "")
        assert sock.recv(65535).startswith(b"SIP/2.0 200 OK")
    source.stop()
