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
is idempotent (an upsert of the same entry), so sending it twice is harmless.
A refusal (409: the attempt is no longer current; another 4xx) is the answer,
as it would be through the relay.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from typing import Any

from triggerfish._domain.attempts import DirectLink, Job
from triggerfish.sdk._socket import answer_to, open_sync_socket

#: how long a journal write waits for its answer before the relay takes it over
ANSWER_TIMEOUT = 10.0
#: after a failed connection, how long the relay carries the writes alone
RETRY_AFTER = 5.0


class DirectJournal:
    """Journal writes straight to the server; None from :meth:`write` means "relay it"."""

    def __init__(self) -> None:
        self._conn: Any = None
        self._opened: contextlib.ExitStack | None = None  # closes the connection
        #: the server URL the open connection goes to
        self._opened_for: str | None = None
        self._ids = itertools.count(1)
        self._retry_at = 0.0
        self._link: DirectLink | None = None
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
        self._link = job.direct if self._credential else None
        self._attempt = (job.attempt_id, job.run_id)

    def write(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        """Send one journal entry; the answer in the relay's shape, or None."""
        link = self._link
        if link is None or time.monotonic() < self._retry_at:
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
            reply = self._answer(conn, call_id)
        except Exception:  # lost, refused or silent: the relay retries it
            self.close()
            self._retry_at = time.monotonic() + RETRY_AFTER
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

    @staticmethod
    def _answer(conn: Any, call_id: int) -> dict[str, Any]:
        return answer_to(conn, call_id, ANSWER_TIMEOUT)
