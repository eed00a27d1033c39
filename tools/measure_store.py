"""Writes 2,000 segments through `CallStore` on each backend (SQLite in a temporary folder, a
private PostgreSQL server from `tests/pgserver.py`) and prints segments per second and the time
to read the call back. From the repository root: `PYTHONPATH=. python tools/measure_store.py`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from qa.store import CallStore, StoreOptions
from qa.types import CallInfo, Segment, Speaker
from tests.pgserver import PostgresServer

#: Segments written, and reads of the whole call timed.
SEGMENTS, READS = 2000, 20


def measure(location: Path | str) -> tuple[float, float]:
    """(segments written per second, milliseconds to read the call back)."""
    with CallStore(StoreOptions(path=location)) as store:
        store.start_call(CallInfo("c", "a", "t", 0.0, (Speaker.AGENT,), 8000))
        began = time.perf_counter()
        for i in range(SEGMENTS):
            store.add_segment(Segment("c", Speaker.AGENT, i, i + 0.5,
                                      f" segment number {i} of the call"))
        write = time.perf_counter() - began
        began = time.perf_counter()
        for _ in range(READS):
            store.call("c")
        read = (time.perf_counter() - began) / READS
    return SEGMENTS / write, read * 1000


def main() -> None:
    server = PostgresServer()
    try:
        with tempfile.TemporaryDirectory() as folder:
            rate, read = measure(Path(folder) / "calls.db")
            print(f"sqlite     {rate:.0f} segments/s, call() of {SEGMENTS} segments {read:.1f} ms")
        rate, read = measure(server.database())
        print(f"postgresql {rate:.0f} segments/s, call() of {SEGMENTS} segments {read:.1f} ms")
    finally:
        server.close()


if __name__ == "__main__":
    main()
