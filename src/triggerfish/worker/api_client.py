"""The worker's side of the worker API.

The hot calls (claims, reports, heartbeats, durable calls from task processes)
go over one WebSocket (``channel.py``); the rest, and everything when the
server offers no socket, over a persistent HTTP/1.1 connection pool.

Claims and reports are typed inside the worker (:class:`ClaimedRun`,
:class:`StartReport`, :class:`CompletionReport`, :class:`ReportAnswer`) and
become the wire's JSON here, and only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, assert_never

import httpx

from triggerfish._channel import (
    Channel,
    ChannelClosed,
    ChannelUnavailable,
    FrameTooLarge,
    StaleReport,
)
from triggerfish._domain.attempts import (
    DirectLink,
    EnvironmentRef,
    Failed,
    Finished,
    Job,
    Succeeded,
)
from triggerfish._redact import task_environment
from triggerfish._servers import CONNECT_TIMEOUT, Servers
from triggerfish.errors import ApiError

log = logging.getLogger(__name__)

#: a call that failed on the way: it may be retried (the server refuses duplicates as stale)
TRANSPORT_ERRORS = (httpx.TransportError, ChannelClosed)

#: seconds a long poll's answer may take beyond the wait it asked the server for
#: (the claim itself, and the trip); past it the server counts as hung
POLL_MARGIN = 5.0

#: spans of task code per call to ``/worker/v1/spans`` (the route takes at most 1000)
SPANS_PER_CALL = 500

#: durable calls answered over the socket (``create_token`` needs the request's URL: HTTP)
_SOCKET_DURABLE = frozenset(
    {"journal", "blob", "wait", "complete_token", "send_event", "kv_get", "kv_set", "kv_delete"}
)

__all__ = [
    "TRANSPORT_ERRORS",
    "CallAbandoned",
    "ClaimRequest",
    "ClaimedRun",
    "CompletionReport",
    "ReportAnswer",
    "ReportsAnswer",
    "StaleReport",
    "StartReport",
    "WorkerApi",
]


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    """A run the server handed this worker: the attempt to run, as a task process runs it."""

    job: Job
    #: the claim began the attempt (EXECUTING): no start report is due
    started: bool


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """Runs to claim along with a batch of reports; the first ``start`` begin at once."""

    worker_id: str
    max: int
    start: int


@dataclass(frozen=True, slots=True)
class StartReport:
    """A claimed attempt the worker begins to run."""

    run_id: str
    attempt_id: str


@dataclass(frozen=True, slots=True)
class CompletionReport:
    """A finished attempt and how it ended."""

    run_id: str
    attempt_id: str
    outcome: Finished


@dataclass(frozen=True, slots=True)
class ReportAnswer:
    """The server's answer to one reported item."""

    attempt_id: str
    #: the attempt is no longer current: the report changed nothing
    stale: bool
    #: the run's status after the report (None when stale)
    status: str | None = None
    #: when a failed run will be retried (epoch seconds)
    retry_at: float | None = None


@dataclass(frozen=True, slots=True)
class ReportsAnswer:
    """The answers to one batch, item by item in order, and the runs it claimed."""

    starts: list[ReportAnswer]
    completions: list[ReportAnswer]
    runs: list[ClaimedRun]


class CallAbandoned(ChannelClosed):
    """Another call found this call's server hung or gone: the worker left that
    server, and this call, still unanswered, goes on to the next one."""


class WorkerApi:
    """The worker API on one server at a time, of the list ``api_url`` names
    (comma-separated, ``_servers.py``): a call the current server fails (refused,
    dropped, unanswered within its timeout) goes to the next one at once, and so
    do the calls still waiting on that server (the long poll for work among them).
    Every worker call may be sent twice: the server refuses a repeated report as
    stale, and claims, heartbeats and durable calls are keyed by the attempt."""

    def __init__(
        self,
        api_url: str,
        secret_key: str,
        *,
        timeout: float = 30.0,
        socket: bool = True,
        connect_timeout: float | None = None,
    ) -> None:
        self.servers = Servers.parse(api_url)
        self._timeout = timeout
        if connect_timeout is None:
            connect_timeout = min(timeout, CONNECT_TIMEOUT) if self.servers.several else timeout
        self._connect_timeout = connect_timeout
        self._secret_key = secret_key
        self._use_socket = socket
        self._max_frame: int | None = None
        #: the longest wait between two tries of a call retried through an outage;
        #: the worker keeps it to a fraction of its heartbeat interval, so a report
        #: lands soon after the server answers again, well within the lease grace
        self.max_retry_delay = 5.0
        # one socket and one HTTP pool per server, made when first used
        self._sockets: dict[int, Channel] = {}
        self._https: dict[int, httpx.AsyncClient] = {}
        #: set when the worker leaves the server of that index (a call it failed):
        #: the calls still waiting on it give up and go on to the next one
        self._left: dict[int, asyncio.Event] = {}
        #: called when the calls go to another server (:meth:`direct_link` changed)
        self.on_move: Callable[[], None] = lambda: None

    @property
    def api_url(self) -> str:
        """The server in use."""
        return self.servers.current

    def _socket(self, index: int) -> Channel | None:
        if not self._use_socket:
            return None
        channel = self._sockets.get(index)
        if channel is None:
            channel = Channel(
                self.servers.urls[index],
                self._secret_key,
                open_timeout=min(self._connect_timeout, 10.0),
            )
            if self._max_frame:
                channel.max_frame = self._max_frame
            self._sockets[index] = channel
        return channel

    def _http(self, index: int) -> httpx.AsyncClient:
        client = self._https.get(index)
        if client is None:
            client = self._https[index] = httpx.AsyncClient(
                base_url=self.servers.urls[index],
                headers={"Authorization": f"Bearer {self._secret_key}"},
                timeout=httpx.Timeout(
                    self._timeout, read=self._timeout + 30, connect=self._connect_timeout
                ),
                limits=httpx.Limits(max_keepalive_connections=16),
            )
        return client

    async def _on_servers(self, what: str, send: Callable[[int], Awaitable[Any]]) -> Any:
        """``send(index)`` to the current server, then to each next one that a
        transport failure sends it on to; the last failure is raised."""
        order = self.servers.order()
        for tried, index in enumerate(order, start=1):
            try:
                result = await self._unless_left(index, send(index))
            except TRANSPORT_ERRORS as exc:
                if tried == len(order):
                    raise
                self._leave(index)
                log.warning(
                    "%s: the server at %s failed (%s); trying %s",
                    what,
                    self.servers.urls[index],
                    str(exc) or type(exc).__name__,
                    self.servers.urls[order[tried]],
                )
                continue
            if index != self.servers.index:
                self.servers.answered(index)
                self.on_move()
            return result
        raise AssertionError("unreachable")

    async def _unless_left(self, index: int, call: Awaitable[Any]) -> Any:
        """Await ``call`` to server ``index``, unless the worker leaves that server
        first: then :class:`CallAbandoned` (a call that waits on a hung server
        would otherwise hold its worker there for its own whole timeout)."""
        if not self.servers.several:
            return await call
        left = self._left.setdefault(index, asyncio.Event())
        work = asyncio.ensure_future(call)
        watch = asyncio.ensure_future(left.wait())
        try:
            await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work
        if not work.cancelled():
            return work.result()
        raise CallAbandoned(f"the worker left {self.servers.urls[index]}")

    def _leave(self, index: int) -> None:
        """Server ``index`` failed a call: move on, and with the first call to fail
        there, take the calls still waiting on it along."""
        self.servers.failed(index)
        if self.servers.index != index:
            left = self._left.pop(index, None)
            if left is not None:
                left.set()
            self.on_move()

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        return await self._on_servers(path, lambda index: self._post_to(index, path, body))

    async def _post_to(
        self, index: int, path: str, body: dict[str, Any], timeout: float | None = None
    ) -> Any:
        if timeout is None:
            response = await self._http(index).post(path, json=body)
        else:
            limit = httpx.Timeout(timeout, connect=self._connect_timeout)
            response = await self._http(index).post(path, json=body, timeout=limit)
        if response.status_code == 409:
            raise StaleReport(response.json().get("error", "stale"))
        if not response.is_success:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise ApiError(response.status_code, message)
        return response.json()

    async def _call(
        self,
        op: str,
        path: str,
        body: dict[str, Any],
        *,
        attempt_id: str = "",
        timeout: float | None = None,
    ) -> Any:
        """``op`` over the socket, or ``POST path`` when the server offers none;
        unanswered after ``timeout`` seconds (default: the client's), the server
        counts as failed."""

        async def send(index: int) -> Any:
            socket = self._socket(index)
            if socket is not None:
                try:
                    limit = self._timeout if timeout is None else timeout
                    return await socket.call(op, body, attempt_id=attempt_id, timeout=limit)
                except ChannelUnavailable as exc:
                    log.warning("no worker socket (%s); using HTTP requests", exc)
                    self._use_socket = False
                except FrameTooLarge:
                    pass  # this one call goes as a request, where the body limit answers 413
            return await self._post_to(index, path, body, timeout)

        return await self._on_servers(op, send)

    def direct_link(self) -> DirectLink | None:
        """Where a task process sends its journal writes to the server itself
        (``worker/_direct.py``, with its attempt credential, never this worker's
        key): None while this worker talks HTTP."""
        socket = self._socket(self.servers.index)
        if socket is None:
            return None
        return DirectLink(socket.url, socket.max_frame)

    def limit_frames(self, max_bytes: int | None) -> None:
        """The largest frame the server takes (from its answer to ``register``)."""
        if max_bytes:
            self._max_frame = max_bytes
            for socket in self._sockets.values():
                socket.max_frame = max_bytes

    async def post_reliably(self, path: str, body: dict[str, Any], *, give_up_after: float) -> Any:
        """POST, retrying connection failures and 5xx with backoff.

        Results must not be lost to a server restart or a network blip; if the
        server stays away longer than the lease, the run is reclaimed anyway and
        the late report is refused as stale.
        """
        return await self._reliably(lambda: self._post(path, body), path, give_up_after)

    async def _reliably(
        self, send: Callable[[], Awaitable[Any]], what: str, give_up_after: float
    ) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + give_up_after
        delay = min(0.2, self.max_retry_delay)
        while True:
            try:
                return await send()
            except (*TRANSPORT_ERRORS, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status < 500:
                    raise
                if loop.time() + delay > deadline:
                    raise
                log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)

    async def register(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.post_reliably(
            "/worker/v1/register", body, give_up_after=30
        )
        return result

    async def dequeue(
        self, worker_id: str, limit: int, wait: float, start: int = 0
    ) -> list[ClaimedRun]:
        """Claim up to ``limit`` runs; the server starts the first ``start`` of them.

        The server answers within ``wait`` seconds (less if its own limit is
        lower), so a server silent ``POLL_MARGIN`` longer counts as hung."""
        body = {"worker_id": worker_id, "max": limit, "wait": wait, "start": start}
        result = await self._call("dequeue", "/worker/v1/dequeue", body, timeout=wait + POLL_MARGIN)
        return self._claimed(result["runs"])

    async def reports(
        self,
        starts: Sequence[StartReport],
        completions: Sequence[CompletionReport],
        claim: ClaimRequest | None = None,
        *,
        give_up_after: float,
    ) -> ReportsAnswer:
        """Report started and finished attempts in one request (one answer per
        item, in order), claiming the worker's next runs with ``claim``."""
        body: dict[str, Any] = {
            "starts": [{"run_id": s.run_id, "attempt_id": s.attempt_id} for s in starts],
            "completions": [_completion_json(c) for c in completions],
        }
        if claim is not None:
            body["claim"] = {"worker_id": claim.worker_id, "max": claim.max, "start": claim.start}
        result = await self._reliably(
            lambda: self._call("reports", "/worker/v1/reports", body),
            "reports",
            give_up_after,
        )
        return ReportsAnswer(
            starts=[_report_answer(a) for a in result["starts"]],
            completions=[_report_answer(a) for a in result["completions"]],
            runs=self._claimed(result.get("runs") or ()),
        )

    def _claimed(self, runs: Sequence[Mapping[str, Any]]) -> list[ClaimedRun]:
        """The claim answer's runs, each with what its task process acts with."""
        if not runs:
            return []
        direct = self.direct_link()
        # a task process's own client gets every server, the one in use first
        return [_claimed_run(run, direct, self.servers.listed()) for run in runs]

    async def durable(
        self, attempt_id: str, op: str, body: dict[str, Any], *, give_up_after: float
    ) -> dict[str, Any]:
        """A task's durable call (``journal``, ``wait``, ``blob``…) for this attempt."""
        path = f"/worker/v1/attempts/{attempt_id}/{op}"
        if op not in _SOCKET_DURABLE:
            return dict(await self.post_reliably(path, body, give_up_after=give_up_after))
        result = await self._reliably(
            lambda: self._call(op, path, body, attempt_id=attempt_id), op, give_up_after
        )
        return dict(result)

    async def heartbeat(
        self, worker_id: str, attempt_ids: list[str], *, within: float | None = None
    ) -> list[str]:
        """Renew the leases of ``attempt_ids``; the attempts the server wants stopped.

        With several servers, one that has not answered ``within`` seconds is left
        for the next (every call goes there from then on), so that a heartbeat
        retried there still renews the leases before they run out.
        """
        body = {"worker_id": worker_id, "attempt_ids": attempt_ids}
        timeout = within if self.servers.several else None
        result = await self._call("heartbeat", "/worker/v1/heartbeat", body, timeout=timeout)
        return list(result["stop"])

    async def logs(self, attempt_id: str, lines: list[dict[str, Any]]) -> None:
        await self.post_reliably(
            "/worker/v1/logs", {"attempt_id": attempt_id, "lines": lines}, give_up_after=10
        )

    async def metadata(self, attempt_id: str, operations: list[dict[str, Any]]) -> None:
        await self.post_reliably(
            "/worker/v1/metadata",
            {"attempt_id": attempt_id, "operations": operations},
            give_up_after=10,
        )

    async def spans(self, attempt_id: str, spans: list[dict[str, Any]]) -> None:
        """Spans task code opened in an attempt, for the run's stored trace."""
        for i in range(0, len(spans), SPANS_PER_CALL):
            await self.post_reliably(
                "/worker/v1/spans",
                {"attempt_id": attempt_id, "spans": spans[i : i + SPANS_PER_CALL]},
                give_up_after=10,
            )

    async def release(self, worker_id: str, attempt_ids: list[str]) -> None:
        await self.post_reliably(
            "/worker/v1/release",
            {"worker_id": worker_id, "attempt_ids": attempt_ids},
            give_up_after=10,
        )

    async def deregister(self, worker_id: str) -> None:
        await self._post("/worker/v1/deregister", {"worker_id": worker_id})

    async def close(self) -> None:
        for socket in self._sockets.values():
            with contextlib.suppress(Exception):  # a dead server's socket is gone already
                await socket.close()
        for client in self._https.values():
            await client.aclose()


# -- the wire's JSON ------------------------------------------------------------------


def _claimed_run(run: Mapping[str, Any], direct: DirectLink | None, api_url: str) -> ClaimedRun:
    environment = run["environment"]
    job = Job(
        run_id=run["run_id"],
        attempt_id=run["attempt_id"],
        attempt_number=run["attempt_number"],
        task_id=run["task_id"],
        payload=run.get("payload"),
        tags=tuple(run.get("tags") or ()),
        environment=EnvironmentRef(environment["id"], environment["slug"]),
        machine=run["machine"],
        max_duration=run.get("max_duration"),
        journal=run.get("journal") or (),
        metadata=run.get("metadata"),
        direct=direct,
        credential=str(run.get("credential") or ""),
        api_url=api_url,
        # the strip list applies to them as to the worker's own environment
        env_vars=tuple(task_environment(dict(run.get("env_vars") or {})).items()),
        trace_id=str(run.get("trace_id") or ""),
        max_attempts=run.get("max_attempts"),
    )
    return ClaimedRun(job, started=bool(run.get("started")))


def _completion_json(report: CompletionReport) -> dict[str, Any]:
    head = {"attempt_id": report.attempt_id, "run_id": report.run_id}
    match report.outcome:
        case Succeeded(output):
            return {**head, "ok": True, "output": output}
        case Failed(error, decision):
            return {
                **head,
                "ok": False,
                "kind": error.kind,
                "error": {
                    "name": error.name,
                    "message": error.message,
                    "stack_trace": error.stack_trace,
                },
                "decision": (
                    None
                    if decision is None
                    else {"action": decision.action, "delay": decision.delay}
                ),
            }
        case unknown:
            assert_never(unknown)


def _report_answer(answer: Mapping[str, Any]) -> ReportAnswer:
    if answer.get("stale"):
        return ReportAnswer(answer["attempt_id"], stale=True)
    return ReportAnswer(
        answer["attempt_id"], stale=False, status=answer["status"], retry_at=answer.get("retry_at")
    )
