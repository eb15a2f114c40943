"""Push over PostgreSQL: LISTEN for one run's change notifications (a :class:`ChangeFeed`).

The migration ``20261202010000_poll_economy.sql`` sends ``NOTIFY "ops_run:<run_id>"`` (empty
payload, see :func:`run_channel`) at the commit of every change a waiter shows: events appended,
status or other run fields changed, artifacts added. :class:`PgRunChanges` LISTENs on its own
connection (a store's connection runs queries; a listening one must stay idle) and tells the wait
loop to re-read the run with ``ops.poll_run_delta`` from its cursor. The notification carries
nothing the reader must not miss, so a lost one costs only latency: after the connection drops
it reconnects with backoff, LISTENs again and asks for a poll (changes made while it was away
are read from the cursor, so nothing is missed or repeated), and the loop polls at least once a
minute anyway. Each LISTEN is checked by notifying itself once: through a transaction pooler,
which accepts LISTEN but delivers nothing, the feed gives up (``live`` False) and the loop polls
once per interval instead.

:func:`change_feed_for` gives a feed for a store with a direct connection (``PgStore``) and None
for REST; it never imports psycopg for REST users. Reusable by anything that follows a run
(``odooops wait``, the Action, a future ``logs --follow``): pass the feed to
:func:`odooops_action.waiting.wait_for_run`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from odooops_action.errors import OdooOpsError

if TYPE_CHECKING:
    import psycopg

    from odooops_action.store.base import RunStore
    from odooops_action.waiting import ChangeFeed

CHANNEL_PREFIX = "ops_run:"  # ops.run_channel(run_id) in SQL: the same rule
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)
SLICE_SECONDS = 0.2  # how often a wait looks at the stop event
# A connection through a transaction pooler (Supabase's port 6543, PgBouncer in transaction mode)
# accepts LISTEN but never delivers notifications. After each LISTEN the feed notifies itself and
# waits this long for the echo; without it, it stops listening and the loop polls every interval.
PROBE_SECONDS = 3.0


def run_channel(run_id: str) -> str:
    """The NOTIFY channel of a run (at most 40 bytes: channel names are limited to 63)."""
    return CHANNEL_PREFIX + run_id


class PgRunChanges:
    """A :class:`~odooops_action.waiting.ChangeFeed` from ``LISTEN "ops_run:<run_id>"``."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        run_id: str,
        *,
        reconnect_delays: Sequence[float] = RECONNECT_DELAYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._channel = run_channel(run_id)
        self._delays = tuple(reconnect_delays)
        self._clock = clock
        self._conn: psycopg.Connection[Any] | None = None
        self._failures = 0
        self._retry_at = 0.0
        self.notifications = 0  # received so far (for tests and benchmarks)
        self.reconnects = 0
        self.live = True  # False once notifications proved not to arrive (a transaction pooler)

    def start(self) -> None:
        self._listen()

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        if not self.live:
            stop.wait(max(timeout, 0.0))
            return False
        deadline = self._clock() + timeout
        while not stop.is_set():
            left = deadline - self._clock()
            if self._conn is None:
                if self._clock() >= self._retry_at and self._listen():
                    self.reconnects += 1
                    return True  # changes made while away were not notified: read them
                if left <= 0:
                    return False
                stop.wait(max(min(left, self._retry_at - self._clock(), SLICE_SECONDS), 0.0))
                continue
            if left <= 0:
                return False
            if self._received(min(left, SLICE_SECONDS)):
                return True
        return False

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _received(self, timeout: float) -> bool:
        """Whether notifications arrived within ``timeout`` (all pending ones are consumed)."""
        import psycopg

        assert self._conn is not None
        try:
            got = sum(1 for _ in self._conn.notifies(timeout=timeout, stop_after=1))
            if got:
                got += sum(1 for _ in self._conn.notifies(timeout=0))
        except psycopg.Error:
            self._lost()
            return False
        self.notifications += got
        return got > 0

    def _listen(self) -> bool:
        import psycopg
        from psycopg import sql

        try:
            self._conn = self._connect()
            self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            self._conn.execute("SELECT pg_notify(%s, 'probe')", (self._channel,))
            echoed = any(True for _ in self._conn.notifies(timeout=PROBE_SECONDS, stop_after=1))
        except (psycopg.Error, OdooOpsError):
            self._lost()
            return False
        if not echoed:
            self.live = False
            self.close()
            return False
        self._failures = 0
        return True

    def _lost(self) -> None:
        self.close()
        delay = self._delays[min(self._failures, len(self._delays) - 1)]
        self._failures += 1
        self._retry_at = self._clock() + delay


def change_feed_for(store: RunStore, run_id: str) -> ChangeFeed | None:
    """A feed of ``run_id``'s changes when ``store`` has a direct PostgreSQL connection, else None."""
    pg = sys.modules.get("odooops_action.store.pg")  # loaded only when a PgStore was opened
    if pg is None or not isinstance(store, pg.PgStore):
        return None
    return PgRunChanges(store.listen_connection, run_id)
