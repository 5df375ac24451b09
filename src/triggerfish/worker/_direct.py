"""A task process's own socket to the server, for its journal writes.

Every durable step ends in a journal write that the task waits for. Relayed
through the worker, each one crosses two more processes' event loops and two
more socket writes than it has to. So a task process whose worker talks to the
server over the worker socket opens its own connection to it (on its first
write) and sends its journal writes there, as the same ``journal`` call the
worker would send, under the same key. The worker stays in charge of
everything else: claims, reports, heartbeats, waits, logs.

Whatever goes wrong here (no connection, a server error, a frame too large, no
answer in time) is left to the worker's relay, which retries: a journal write
is idempotent (an upsert of the same entry, guarded by the attempt being the
run's current one), so sending it twice is harmless. A refusal (409: the
attempt is no longer current; another 4xx) is the answer, as it would be
through the relay.

The link follows the worker's server. With several servers the worker leaves
one that hangs or dies and tells its task processes the server it moved to
(a ``("link", ...)`` message on their pipe, ``executor.py``): the next write
goes there. A write waiting on the server the worker just left gives up at
once and is relayed; one that failed on a server is relayed, not sent there
again, for :data:`RETRY_AFTER` seconds or until the worker names another.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

from triggerfish._domain.attempts import DirectLink, Job
from triggerfish.sdk._socket import answer_to, open_sync_socket

#: how long a journal write waits for its answer before the relay takes it over
ANSWER_TIMEOUT = 10.0
#: after a failed write, how long the relay carries the writes meant for that server
RETRY_AFTER = 5.0
#: while a write waits for its answer, how often it looks for news of the worker's server
WATCH_EVERY = 0.2


class ServerLeft(Exception):
    """The worker left the server a write waits on: the relay takes the write."""


class DirectJournal:
    """Journal writes straight to the server; None from :meth:`write` means "relay it"."""

    def __init__(self) -> None:
        self._conn: Any = None
        self._opened: contextlib.ExitStack | None = None  # closes the connection
        #: the server URL the open connection goes to
        self._opened_for: str | None = None
        self._ids = itertools.count(1)
        self._retry_at = 0.0
        #: the server the last write failed on (relayed until ``_retry_at``)
        self._failed_url: str | None = None
        self._link: DirectLink | None = None
        #: reads the worker's messages that arrived meanwhile (a new link among them)
        self.watch: Callable[[], None] = lambda: None
        self._attempt: tuple[str, str] = ("", "")
        self._credential = ""

    def bind(self, job: Job) -> None:
        """The attempt about to run, and the worker's link (None: relay everything).

        Each write carries the attempt's own credential. The connection, opened
        with the credential of the attempt that first wrote, stays open for the
        attempts after it (a handshake per attempt would cost a durable run a
        few milliseconds).
        """
        self._credential = job.credential
        self._attempt = (job.attempt_id, job.run_id)
        self.follow(job.direct)

    def follow(self, link: DirectLink | None) -> None:
        """The worker's link now (None: relay everything); a server other than
        the one the last write failed on is tried at once."""
        self._link = link if self._credential else None
        if link is None or link.url != self._failed_url:
            self._failed_url, self._retry_at = None, 0.0

    def write(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        """Send one journal entry; the answer in the relay's shape, or None."""
        link = self._link
        if link is None or (link.url == self._failed_url and time.monotonic() < self._retry_at):
            return None
        attempt_id, run_id = self._attempt
        call_id = next(self._ids)
        frame = {"id": call_id, "op": "journal", "attempt_id": attempt_id}
        frame["credential"] = self._credential
        frame["body"] = {**entry, "run_id": run_id}
        data = json.dumps(frame, separators=(",", ":"))
        if len(data.encode()) > link.max_frame:
            return None  # the relay sends it as a request, where the body limit answers
        try:
            conn = self._connected(link)
            conn.send(data)
            reply = self._answer(conn, call_id, link.url)
        except ServerLeft:  # the worker moved on: the relay sends it where it went
            self.close()
            return None
        except Exception:  # lost, refused or silent: the relay retries it
            self.close()
            self._failed_url, self._retry_at = link.url, time.monotonic() + RETRY_AFTER
            return None
        status = reply.get("status")
        if status == 200:
            return dict(reply.get("body") or {})
        if isinstance(status, int) and 400 <= status < 500:
            return {"_status": status, "error": str(reply.get("error") or "refused")}
        return None  # a server error: the relay retries with backoff

    def close(self) -> None:
        opened, self._opened, self._conn = self._opened, None, None
        self._opened_for = None
        if opened is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to close cleanly
                opened.close()

    def _connected(self, link: DirectLink) -> Any:
        if self._conn is not None and self._opened_for == link.url:
            return self._conn
        self.close()
        # a write that finds the connection dead is relayed
        self._opened, self._conn = open_sync_socket(link.url, self._credential, open_timeout=5)
        self._opened_for = link.url
        return self._conn

    def _answer(self, conn: Any, call_id: int, url: str) -> dict[str, Any]:
        """The answer within :data:`ANSWER_TIMEOUT`, unless the worker leaves
        ``url`` first (:class:`ServerLeft`): a write waiting on a hung server
        goes on to the next one as soon as the worker does."""
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            try:
                return answer_to(conn, call_id, min(left, WATCH_EVERY))
            except TimeoutError:
                if left <= WATCH_EVERY:
                    raise
            self.watch()
            if self._link is None or self._link.url != url:
                raise ServerLeft(url)
