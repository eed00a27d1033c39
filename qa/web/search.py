"""The call list's filters and full-text search over transcripts, on either store backend.

Neither backend splits Chinese into words: SQLite FTS5's `unicode61` tokenizer takes a run of
Chinese characters for one token, PostgreSQL's parsers likewise, so "生气" would never match
inside "我真的很生气". The index therefore holds each segment's (redacted, as stored) text with
every run of Han characters rewritten as its overlapping character pairs ("我真 真的 的很 很生
生气"), and a query is rewritten the same way and searched as a phrase: any Chinese query of
two characters or more matches wherever it occurs, an English one as a run of whole words. A
one-character Chinese query matches pairs that start with it. A query in traditional
characters is folded to simplified, as the recogniser's output is before it is stored.

- SQLite: an FTS5 table (`unicode61`, diacritics removed) over that text. It is filled here,
  lazily: before each search, segments stored since the last one (by any process) are added;
  a trigger in the store removes a deleted segment's entry.
- PostgreSQL: a `tsvector` per segment whose terms and positions this module writes (the
  same tokens FTS5 would make, diacritics removed), with a GIN index, matched by a phrase
  `tsquery` (`a <-> b`). A trigger queues each new segment (`transcript_pending`), whichever
  node stores it, and each search first indexes the queue; a deleted segment leaves both by
  its foreign keys.

The user's text never reaches either as syntax: only word tokens, inside one phrase.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path

from qa.db import Backend
from qa.rules.scoring import BANDS
from qa.store import CallListing, StoreOptions, open_backend
from qa.textnorm import to_simplified

__all__ = ["CallFilter", "CallSearch", "index_text", "match_query", "tsquery", "tsvector"]

log = logging.getLogger("qa.web.search")

#: Han ideographs (CJK unified, extension A, compatibility).
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_TOKEN = re.compile(r"[^\W_]+")
#: Segments added to the index per statement batch.
_BATCH = 2000


def index_text(text: str) -> str:
    """The text as the index holds it: NFKC, lower case, Han runs as overlapping pairs.

    Stored transcripts are simplified already (`qa.asr` converts Chinese output); queries are
    folded to simplified in `match_query`, so traditional input finds them too.
    """
    text = unicodedata.normalize("NFKC", text).lower()

    def pairs(m: re.Match) -> str:
        run = m.group()
        if len(run) == 1:
            return f" {run} "
        return " " + " ".join(run[i:i + 2] for i in range(len(run) - 1)) + " "

    return _HAN.sub(pairs, text)


def match_query(query: str) -> str | None:
    """An FTS5 MATCH expression for a user's search text (None: nothing to search).

    The tokens carry no quotes or operators, so user text cannot change the expression.
    """
    tokens = _TOKEN.findall(index_text(to_simplified(query)))
    if not tokens:
        return None
    phrase = '"' + " ".join(tokens) + '"'
    if len(tokens[-1]) == 1 and _HAN.fullmatch(tokens[-1]):
        phrase += " *"
    return phrase


def _terms(text: str) -> list[str]:
    """The index's tokens of `text`, diacritics removed (FTS5's `remove_diacritics 2`)."""
    folded = index_text(text)
    if not unicodedata.is_normalized("NFD", folded):  # only then has it marks to drop
        bare = "".join(c for c in unicodedata.normalize("NFD", folded)
                       if not unicodedata.combining(c))
        folded = unicodedata.normalize("NFC", bare)
    return _TOKEN.findall(folded)


def tsvector(text: str) -> str:
    """A segment's text as a PostgreSQL `tsvector` literal: its terms with their positions
    (so a phrase query can match them in order). Terms are word characters only, so no quote
    or backslash needs escaping."""
    # PostgreSQL keeps positions up to 16383; a segment of that many words does not occur.
    return " ".join([f"'{t}':{i if i < 16383 else 16383}"
                     for i, t in enumerate(_terms(text), 1)])


def tsquery(query: str) -> str | None:
    """A PostgreSQL phrase `tsquery` literal for a user's search text (None: nothing to
    search); the twin of `match_query`, operators and quotes never survive."""
    tokens = _terms(to_simplified(query))
    if not tokens:
        return None
    parts = [f"'{t}'" for t in tokens]
    if len(tokens[-1]) == 1 and _HAN.fullmatch(tokens[-1]):
        parts[-1] += ":*"
    return " <-> ".join(parts)


@dataclass(frozen=True, slots=True)
class CallFilter:
    """What the call list shows.

    Attributes:
        text: Words or characters that a segment of the call says ('' for any).
        agent: Only this agent's calls ('' for all).
        since, until: Started at or after / before these epoch seconds (None: open).
        band: Effective pay band ('' for any).
        category: Call category ('' for any).
        rule: Only calls with an event of this rule ('' for any).
        min_score, max_score: Effective total within these bounds, inclusive.
        limit: Most calls returned, newest first.
    """

    text: str = ""
    agent: str = ""
    since: float | None = None
    until: float | None = None
    band: str = ""
    category: str = ""
    rule: str = ""
    min_score: float | None = None
    max_score: float | None = None
    limit: int = 200


#: The call list's query: `{hits}` joins the calls a search matches (with their first matching
#: segment), `{where}` filters calls, `{having}` their effective scores. Scores
#: are computed per listed call (the latest override of each item shifts the scorer's total,
#: clamped to 0-100, as `qa.store` does on read), so a rare phrase costs well under a
#: millisecond however many calls are stored.
_LIST = """
SELECT call_id, agent_id, source, started_at, duration, category, end_reason,
       CASE WHEN raw > 100 THEN 100 WHEN raw < 0 THEN 0 ELSE raw END AS total, automatic,
       events, overrides, hit
FROM (
    SELECT c.call_id, c.agent_id, c.source, c.started_at, c.duration, c.category,
           c.end_reason, s.total AS automatic,
           s.total + coalesce((SELECT sum(o.new_points - i.points_awarded) FROM overrides o
               JOIN score_items i ON i.call_id = o.call_id AND i.rule_id = o.rule_id
               WHERE o.call_id = c.call_id AND o.id = (SELECT max(o2.id) FROM overrides o2
                   WHERE o2.call_id = o.call_id AND o2.rule_id = o.rule_id)), 0) AS raw,
           (SELECT count(*) FROM events ev WHERE ev.call_id = c.call_id) AS events,
           (SELECT count(*) FROM overrides ov WHERE ov.call_id = c.call_id) AS overrides,
           {hit} AS hit
    FROM calls c LEFT JOIN scorecards s ON s.call_id = c.call_id {hits}
    WHERE {where}
) AS listed
WHERE {having}
ORDER BY started_at DESC, call_id LIMIT ?
"""
_TOTAL = "(CASE WHEN raw > 100 THEN 100 WHEN raw < 0 THEN 0 ELSE raw END)"


#: How each backend joins the calls a search matches, with their first matching segment.
_HITS = {
    "sqlite": "JOIN (SELECT call_id AS hit_call, min(rowid) AS first_hit FROM transcript_index"
              " WHERE transcript_index MATCH ? GROUP BY call_id) AS h ON h.hit_call = c.call_id",
    "postgresql": "JOIN (SELECT call_id AS hit_call, min(segment_id) AS first_hit"
                  " FROM transcript_index WHERE body @@ ?::tsquery GROUP BY call_id) AS h"
                  " ON h.hit_call = c.call_id",
}


class CallSearch:
    """Filtered, searchable call list over a call store's database.

    Args:
        location: The call store, an SQLite file or a PostgreSQL URL (created and migrated
            by `CallStore` first); or its `StoreOptions`.
    """

    def __init__(self, location: Path | str | StoreOptions) -> None:
        options = location if isinstance(location, StoreOptions) else StoreOptions(path=location)
        self._lock = threading.Lock()
        self._db: Backend = open_backend(replace(options, read_only=False))

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self._db.dialect

    def close(self) -> None:
        """Closes the connection."""
        with self._lock:
            self._db.close()

    def sync(self) -> int:
        """Adds segments stored since the last call to the index; returns how many."""
        added = 0
        with self._lock:
            while True:
                try:
                    batch = (self._sync_postgresql() if self._db.dialect == "postgresql"
                             else self._sync_sqlite())
                except self._db.errors as exc:
                    if not self._db.transient(exc):
                        raise
                    # A lock, a deadlock with a retention delete, a restart: the queue
                    # stays, the next search indexes it; this one answers from the index.
                    log.warning("search index not updated this time: %s", exc)
                    return added
                if not batch:
                    return added
                added += batch

    def _sync_sqlite(self) -> int:
        row = self._db.execute(
            "SELECT rowid FROM transcript_index ORDER BY rowid DESC LIMIT 1").fetchone()
        rows = self._db.execute(
            "SELECT id, call_id, text FROM segments WHERE id > ? ORDER BY id LIMIT ?",
            (row[0] if row else 0, _BATCH)).fetchall()
        if not rows:
            return 0
        self._db.begin()
        try:
            self._db.executemany(
                "INSERT INTO transcript_index (rowid, body, call_id) VALUES (?, ?, ?)",
                [(i, index_text(text), call) for i, call, text in rows])
            self._db.commit()
        except BaseException:
            self._db.rollback()
            raise
        return len(rows)

    def _sync_postgresql(self) -> int:
        # Most searches find the queue empty: one read instead of a write transaction.
        if not self._db.execute("SELECT 1 FROM transcript_pending LIMIT 1").fetchall():
            return 0
        self._db.begin()
        try:
            # SKIP LOCKED: another server indexing the same queue is not waited for.
            rows = self._db.execute(
                "SELECT p.segment_id, s.call_id, s.text FROM transcript_pending p"
                " JOIN segments s ON s.id = p.segment_id ORDER BY p.segment_id LIMIT ?"
                " FOR UPDATE OF p SKIP LOCKED", (_BATCH,)).fetchall()
            if rows:
                ids = [r[0] for r in rows]
                # One statement per batch (arrays), not one per row: a round trip each.
                self._db.execute(
                    "INSERT INTO transcript_index (segment_id, call_id, body)"
                    " SELECT i, c, b::tsvector FROM unnest(?::bigint[], ?::text[], ?::text[])"
                    " AS t(i, c, b) ON CONFLICT (segment_id) DO NOTHING",
                    (ids, [r[1] for r in rows], [tsvector(r[2]) for r in rows]))
                self._db.execute("DELETE FROM transcript_pending WHERE segment_id = ANY(?)",
                                 (ids,))
            self._db.commit()
        except BaseException:
            self._db.rollback()
            raise
        return len(rows)

    def calls(self, what: CallFilter) -> list[CallListing]:
        """The calls that pass the filter, newest first, with effective scores."""
        return self.search(what)[0]

    def search(self, what: CallFilter) -> tuple[list[CallListing], dict[str, str]]:
        """The calls that pass the filter, newest first, with effective scores; and for a
        text search, each call's first matching segment (call id -> its text)."""
        from qa.rules.scoring import band as band_of

        where: list[str] = ["1 = 1"]
        args: list[object] = []
        having, later = ["1 = 1"], []
        hits, hit = "", "NULL"
        if what.text:
            expression = (tsquery(what.text) if self._db.dialect == "postgresql"
                          else match_query(what.text))
            if expression is None:
                return [], {}
            self.sync()
            hits = _HITS[self._db.dialect]
            hit = "h.first_hit"
            args.append(expression)
        for column, value in (("c.agent_id", what.agent), ("c.category", what.category)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if what.since is not None:
            where.append("c.started_at >= ?")
            args.append(what.since)
        if what.until is not None:
            where.append("c.started_at < ?")
            args.append(what.until)
        if what.rule:
            where.append("EXISTS (SELECT 1 FROM events ev WHERE ev.call_id = c.call_id"
                         " AND ev.rule_id = ?)")
            args.append(what.rule)
        if what.band:
            lower = -1.0
            for upper, label in BANDS:
                if label == what.band:
                    # A band is above its lower bound, up to and including its upper one.
                    having.append(f"{_TOTAL} > ? AND {_TOTAL} <= ?")
                    later += [lower, upper]
                    break
                lower = upper
            else:
                return [], {}
        if what.min_score is not None:
            having.append(f"{_TOTAL} >= ?")
            later.append(what.min_score)
        if what.max_score is not None:
            having.append(f"{_TOTAL} <= ?")
            later.append(what.max_score)
        sql = _LIST.format(hits=hits, hit=hit, where=" AND ".join(where),
                           having=" AND ".join(having))
        with self._lock:
            rows = self._db.execute(sql, (*args, *later, what.limit)).fetchall()
            first = [r[11] for r in rows if r[11] is not None]
            texts = dict(self._db.execute(
                f"SELECT id, text FROM segments WHERE id IN ({', '.join('?' * len(first))})",
                first).fetchall()) if first else {}
        calls = [CallListing(call_id=r[0], agent_id=r[1], source=r[2], started_at=r[3],
                             duration=r[4], category=r[5], end_reason=r[6],
                             total=r[7], automatic_total=r[8],
                             band=band_of(r[7]) if r[7] is not None else "", events=r[9],
                             overrides=r[10]) for r in rows]
        return calls, {r[0]: texts[r[11]].strip() for r in rows if r[11] in texts}

    def values(self) -> dict[str, list[str]]:
        """Agents, categories and rules present in the store (for the filter menus)."""
        with self._lock:
            return {
                "agents": [r[0] for r in self._db.execute(
                    "SELECT DISTINCT agent_id FROM calls ORDER BY 1").fetchall()],
                "categories": [r[0] for r in self._db.execute(
                    "SELECT DISTINCT category FROM calls WHERE category IS NOT NULL ORDER BY 1"
                ).fetchall()],
                "rules": [r[0] for r in self._db.execute(
                    "SELECT DISTINCT rule_id FROM events ORDER BY 1").fetchall()],
            }

    def running(self) -> list[str]:
        """Ids of the calls in progress (not ended), oldest first."""
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT call_id FROM calls WHERE ended_at IS NULL ORDER BY started_at"
            ).fetchall()]
