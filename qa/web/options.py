"""Options of the review workspace, built once at the edge (`qa serve`, `qa users`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from qa.web.live import LiveOptions


@dataclass(frozen=True, slots=True)
class AccountOptions:
    """Passwords, sessions and lockout.

    Attributes:
        min_password: Fewest characters a password may have.
        max_failures: Failed logins in a row that lock an account.
        lockout_s: Seconds a locked account refuses every login (even a right password).
        session_s: Seconds a login lasts.
        address_failures: Failed logins one client address may make within
            `address_window_s` before its further logins are refused (429) unchecked and
            unaudited until the window passes: the per-account lockout does not stop one
            password tried against many names, nor a flood of tries at a locked account (each
            answered at once and audited).
        address_window_s: Seconds over which an address's failures are counted.
    """

    min_password: int = 10
    max_failures: int = 5
    lockout_s: float = 900.0
    session_s: float = 8 * 3600.0
    address_failures: int = 30
    address_window_s: float = 60.0


@dataclass(frozen=True, slots=True)
class DisputeOptions:
    """How agents dispute scorecard items.

    Attributes:
        deadline_days: Days a reviewer has to decide a dispute; an undecided one then reads
            `expired` and can no longer be decided.
        per_call: Most disputes an agent may open on one evaluation (call).
        outcomes: The states a reviewer may decide (besides the built-in `open` and
            `expired`); `accepted` applies the reviewer's points as an override.
    """

    deadline_days: float = 7.0
    per_call: int = 3
    outcomes: tuple[str, ...] = ("accepted", "rejected")


@dataclass(frozen=True, slots=True)
class WebOptions:
    """Where and how `qa serve` listens.

    Attributes:
        db: The call store: an SQLite file or a PostgreSQL URL.
        host: Address to bind; the loopback unless the operator says otherwise.
        port: TCP port (0: any free port).
        tls_cert, tls_key: PEM files; with both, the server speaks only HTTPS and cookies
            are marked `Secure`.
        page_size: Most calls the call list shows at once.
        accounts, disputes, live: See their classes.
    """

    db: Path | str
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: Path | None = None
    tls_key: Path | None = None
    page_size: int = 200
    accounts: AccountOptions = field(default_factory=AccountOptions)
    disputes: DisputeOptions = field(default_factory=DisputeOptions)
    live: LiveOptions = field(default_factory=LiveOptions)

    @property
    def tls(self) -> bool:
        """True when the server speaks HTTPS."""
        return self.tls_cert is not None
