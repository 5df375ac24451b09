"""The worker process: register, claim runs, run them in child processes, report.

Loops, each small: the claim loop long-polls the server for as many runs as
there are free slots, plus some ahead; the claim starts every run it hands
over, so a slot that frees up begins its next run without a round trip. Each
run gets its own asyncio task (execute in the pool → flush logs → report), and
reports go to the server in batches that also claim the next runs
(``reports.py``); the heartbeat loop renews leases and stops
attempts the server no longer wants (canceled, reclaimed); the log loop ships
captured output in batches.

Shutdown (SIGTERM/SIGINT): stop claiming, let running attempts finish within
the grace period, then stop the rest and release them to the queue, so none is
lost and none spends a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, assert_never

from triggerfish._domain.attempts import (
    Abandoned,
    AttemptOutcome,
    ErrorInfo,
    Failed,
    Finished,
    Job,
    Succeeded,
    Suspended,
)
from triggerfish._heap import settle_after_startup
from triggerfish._redact import redact, task_environment
from triggerfish.errors import ApiError
from triggerfish.worker.api_client import (
    TRANSPORT_ERRORS,
    ClaimedRun,
    ClaimRequest,
    CompletionReport,
    StaleReport,
    WorkerApi,
)
from triggerfish.worker.discovery import (
    DiscoveryError,
    ProjectConfig,
    code_version,
    load_tasks,
)
from triggerfish.worker.executor import ExecutorPool
from triggerfish.worker.metrics import WorkerMetrics
from triggerfish.worker.reports import Reporter

log = logging.getLogger("triggerfish.worker")
#: starts the log line of a task file that failed to import (read by `triggerfish dev`)
BROKEN_FILE_MARK = "task file not loaded: "

#: runs that hold a task process this long (seconds, on average) are not claimed ahead
LONG_RUN = 1.0
#: runs claimed ahead at most, however short they are
MAX_AHEAD = 32
#: a heartbeat's wait for its server's answer, as a share of the heartbeat interval:
#: a server that leaves one unanswered that long is left for the next (when there
#: are several), and the heartbeat tried again there lands well within the lease
HEARTBEAT_PATIENCE = 0.8


@dataclass
class WorkerOptions:
    api_url: str
    secret_key: str
    concurrency: int = 4
    name: str | None = None
    version: str | None = None
    #: seconds running attempts get to finish after SIGTERM before being released
    grace_period: float = 30.0
    #: how long one dequeue call may wait on the server
    poll_wait: float = 20.0
    #: runs claimed ahead of a free slot, so a slot that frees up starts its next
    #: run without waiting for the server. They are EXECUTING from the claim on:
    #: a cancel reaches one at the next heartbeat, like any running attempt, and
    #: if this worker dies they count as crashed attempts. None: adaptive, from
    #: ``concurrency`` up to what the slots get through in one round trip to the
    #: server (at most ``MAX_AHEAD``) while runs are short, and none once they take
    #: a second or more (a long run would keep the ones behind it from other workers)
    prefetch: int | None = None
    #: claims, reports and durable calls over one WebSocket (HTTP if False, or
    #: when the server offers none)
    socket: bool = True
    #: serve the worker's own /metrics on this port (None: no metrics)
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"


class Worker:
    def __init__(self, config: ProjectConfig, options: WorkerOptions) -> None:
        self.config = config
        self.options = options
        self.api = WorkerApi(options.api_url, options.secret_key, socket=options.socket)
        self.pool: ExecutorPool | None = None
        self.worker_id = ""
        self.metrics: WorkerMetrics | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        self._abandoned: set[str] = set()  # attempts stopped on the server's request
        self._suspended: set[str] = set()  # attempts whose run now waits durably
        self._slot_freed = asyncio.Event()
        # task processes free to start an attempt; claimed runs wait here
        self._slots = asyncio.Semaphore(options.concurrency)
        self._waiting: set[str] = set()  # claimed, not yet given a slot
        self._prefetch = options.concurrency if options.prefetch is None else options.prefetch
        self._adaptive_prefetch = options.prefetch is None
        self._typical_run: float | None = None  # seconds a run holds a task process (average)
        self._log_buffer: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._metadata_buffer: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._span_buffer: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._stopping = asyncio.Event()
        #: stop() called twice: release running attempts without waiting out the grace
        self._hurry = asyncio.Event()
        self._heartbeat_interval = 5.0
        self._secret = options.secret_key
        self._reports = Reporter(
            self.api,
            lambda: self._heartbeat_interval * 20,
            claim=self._claim_with_reports,
            claimed=self._take,
        )
        self._executing: set[str] = set()  # attempts holding a task process
        #: finished attempts whose report the server has not answered yet: their
        #: leases are renewed until it has (a report retried through an outage
        #: must not find its attempt reclaimed)
        self._reporting: set[str] = set()
        self._long_polling = False  # a dequeue call is out: reports claim nothing

    # -- life cycle -----------------------------------------------------------------

    async def run(self) -> None:
        """Serve until :meth:`stop` is called, then shut down gracefully."""
        registry, broken = load_tasks(self.config)
        if broken and not self.config.skip_broken:
            raise DiscoveryError(str(broken[0]))
        for failed in broken:
            # one line each, which `triggerfish dev` shows in its console
            log.error("%s%s: its tasks are not served", BROKEN_FILE_MARK, failed)
        version = self.options.version or code_version(self.config)
        registered = await self.api.register(
            {
                "version": version,
                "name": self.options.name or f"{socket.gethostname()}:{os.getpid()}",
                "concurrency": self.options.concurrency,
                "tasks": [t.manifest() for t in registry],
                "environment": {"concurrency_limit": self.config.environment_concurrency},
                # shown by the dashboard (home and Tasks pages) while this worker is the newest
                "import_errors": [
                    {
                        "file": failed.relative_path(self.config.root),
                        "error": redact(failed.error),
                        "lines": [redact(line) for line in failed.lines],
                    }
                    for failed in broken
                ],
            }
        )
        self.worker_id = registered["worker_id"]
        if self.options.metrics_port is not None:
            self.metrics = WorkerMetrics(lambda: len(self._executing), self.options.concurrency)
            self.metrics.serve(self.options.metrics_port, self.options.metrics_host)
        self.api.limit_frames(registered.get("socket_max_bytes"))
        self._reports.linger = float(registered.get("report_linger") or 0.0)
        self._heartbeat_interval = max(0.2, min(5.0, registered["heartbeat_timeout"] / 3))
        # a retried report or durable call tries again at least twice a heartbeat
        self.api.max_retry_delay = self._heartbeat_interval / 2
        self.pool = ExecutorPool(
            self.config,
            self.options.concurrency,
            self._on_log,
            on_call=self._on_call,
            on_metadata=self._on_metadata,
            on_span=self._on_span,
            env=task_environment(os.environ),
            max_durations={t.id: t.max_duration for t in registry},
            direct_link=self.api.direct_link,
        )
        # task processes' own journal writes follow the worker to its next server
        self.api.on_move = self.pool.follow_server
        await self.pool.start()
        settle_after_startup()
        log.info(
            "worker %s (version %s) serving %d task(s) with %d slot(s)",
            self.worker_id,
            version,
            len(registry),
            self.options.concurrency,
        )
        loops = [
            asyncio.create_task(self._heartbeat_loop()),
            asyncio.create_task(self._log_loop()),
        ]
        try:
            await self._claim_loop()
        finally:
            await self._shutdown()
            for task in loops:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._flush_logs()
            with contextlib.suppress(Exception):
                await self.api.deregister(self.worker_id)
            await self.api.close()

    def stop(self) -> None:
        """Stop claiming and let running attempts finish within the grace period;
        called again (a second SIGTERM), release them now instead."""
        if self._stopping.is_set():
            self._hurry.set()
        self._stopping.set()

    async def _shutdown(self) -> None:
        assert self.pool is not None
        if self._waiting:
            # claimed ahead but never started: back to the queue at once, no retry spent
            unstarted = list(self._waiting)
            self._abandoned.update(unstarted)
            with contextlib.suppress(Exception):
                await self.api.release(self.worker_id, unstarted)
        if self._running:
            log.info(
                "waiting up to %.0fs for %d run(s)", self.options.grace_period, len(self._running)
            )
            await self._drain(self.options.grace_period)
        leftovers = list(self._running)
        if leftovers:
            log.warning("releasing %d unfinished run(s) back to the queue", len(leftovers))
            self._abandoned.update(leftovers)
            for attempt_id in leftovers:
                await self.pool.cancel(attempt_id)
            with contextlib.suppress(Exception):
                await self.api.release(self.worker_id, leftovers)
            if self._running:
                await asyncio.wait(list(self._running.values()), timeout=10)
        await self.pool.close()

    async def _drain(self, grace: float) -> None:
        """Wait until the running attempts end, the grace period passes, or stop()
        is called again."""
        hurry = asyncio.create_task(self._hurry.wait())
        deadline = asyncio.get_running_loop().time() + grace
        try:
            while self._running and not self._hurry.is_set():
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    return
                await asyncio.wait(
                    [*self._running.values(), hurry],
                    timeout=left,
                    return_when=asyncio.FIRST_COMPLETED,
                )
        finally:
            hurry.cancel()

    # -- claiming ---------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            free = self._room()
            if free <= 0:
                self._slot_freed.clear()
                await self._until_stopped_or(self._slot_freed.wait())
                continue
            if self._reports.active:
                # a busy worker claims along with its reports; long-poll once it is quiet
                await self._until_stopped_or(self._reports.wait_idle())
                continue
            self._long_polling = True
            try:
                wait = self.options.poll_wait
                jobs = await self._until_stopped_or(
                    self.api.dequeue(self.worker_id, min(free, 100), wait, start=min(free, 100))
                )
                backoff = 0.5
            except (*TRANSPORT_ERRORS, ApiError) as exc:
                log.warning("dequeue failed (%s); retrying in %.1fs", exc, backoff)
                await self._until_stopped_or(asyncio.sleep(backoff))
                backoff = min(backoff * 2, 5.0)
                continue
            finally:
                self._long_polling = False
            self._take(jobs or [])

    def _room(self, finishing: int = 0) -> int:
        """Runs this worker can take: slots plus prefetch, less the attempts in flight
        (waiting for a slot, running, or being reported, except ``finishing`` ones)."""
        return self.options.concurrency + self._ahead() - (len(self._running) - finishing)

    def _ahead(self) -> int:
        """Runs to claim ahead of free slots now.

        Adaptive (no ``prefetch`` given): none once runs are long; for short runs,
        about what the slots get through in one round trip to the server, so a
        busy worker's slots never wait on it and each report carries many runs.
        """
        typical = self._typical_run
        if not self._adaptive_prefetch or typical is None:
            return self._prefetch
        if typical >= LONG_RUN:
            return 0
        per_round_trip = self._reports.round_trip / max(typical, 1e-4)
        wanted = math.ceil(self.options.concurrency * per_round_trip)
        return max(self._prefetch, min(MAX_AHEAD, wanted))

    def _ran_for(self, seconds: float) -> None:
        self._typical_run = _moving_average(self._typical_run, seconds)

    def _claim_with_reports(self, finishing: int) -> ClaimRequest | None:
        if self._long_polling or self._stopping.is_set():
            return None
        room = self._room(finishing)
        if room <= 0:
            return None
        room = min(room, 100)
        return ClaimRequest(self.worker_id, max=room, start=room)

    def _take(self, runs: list[ClaimedRun]) -> None:
        for run in runs:
            attempt_id = run.job.attempt_id
            self._waiting.add(attempt_id)  # until it gets a task process
            self._running[attempt_id] = asyncio.create_task(self._execute(run))

    async def _until_stopped_or(self, awaitable: Any) -> Any:
        """Await ``awaitable`` unless the worker is asked to stop first (then None).

        A dequeue abandoned this way may already have claimed runs on the
        server; they were never run, and the server hands them back to the
        queue when the worker deregisters on its way out.
        """
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.create_task(self._stopping.wait())
        done, _ = await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            stop.cancel()
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        return None

    # -- one attempt ------------------------------------------------------------------

    async def _execute(self, run: ClaimedRun) -> None:
        assert self.pool is not None
        attempt_id = run.job.attempt_id
        try:
            async with self._slots:
                self._waiting.discard(attempt_id)
                self._executing.add(attempt_id)
                began = time.monotonic()
                outcome = None
                try:
                    outcome = await self._run_in_slot(run)
                finally:
                    if outcome is not None:
                        self._reporting.add(attempt_id)
                    self._executing.discard(attempt_id)
                    took = time.monotonic() - began
                    self._ran_for(took)
                    if self.metrics is not None:
                        self.metrics.attempt_done(run.job.task_id, outcome, took)
            if outcome is None:
                return  # handed back unstarted
            # the task process takes its next run while this one is reported
            await self._flush_logs(attempt_id)
            if attempt_id in self._abandoned:
                return  # canceled, reclaimed or released: the server has moved on
            finished = self._to_report(attempt_id, outcome)
            if finished is not None:
                report = CompletionReport(run.job.run_id, attempt_id, finished)
                await self._reports.complete(report)
        except StaleReport as exc:
            log.info("attempt %s is no longer current: %s", attempt_id, exc)
        except Exception:
            log.exception(
                "attempt %s could not be reported; the server will reclaim it", attempt_id
            )
        finally:
            self._waiting.discard(attempt_id)
            self._reporting.discard(attempt_id)
            self._running.pop(attempt_id, None)
            self._abandoned.discard(attempt_id)
            self._suspended.discard(attempt_id)
            self._slot_freed.set()

    def _to_report(self, attempt_id: str, outcome: AttemptOutcome) -> Finished | None:
        """What the server hears of ``outcome``: None for an attempt it has moved past."""
        match outcome:
            case Succeeded() | Failed():
                return outcome
            case Abandoned():
                return None  # the server refused the attempt's records: it has moved on
            case Suspended() if attempt_id in self._suspended:
                return None  # the server parked the run (WAITING) when it accepted the wait
            case Suspended():
                return _UNACCEPTED_SUSPEND
            case unknown:
                assert_never(unknown)

    async def _run_in_slot(self, run: ClaimedRun) -> AttemptOutcome | None:
        """Start (unless the claim did) and run one attempt; None if handed back instead."""
        assert self.pool is not None
        attempt_id = run.job.attempt_id
        if attempt_id in self._abandoned or self._stopping.is_set():
            if attempt_id not in self._abandoned:  # not yet handed back
                self._abandoned.add(attempt_id)
                await self.api.release(self.worker_id, [attempt_id])
            return None
        if not run.started:  # claimed ahead: report the start now
            await self._reports.start(run.job.run_id, attempt_id)
        return await self.pool.run(run.job)

    # -- durable calls from task processes ------------------------------------------

    async def _on_call(self, job: Job, op: str, body: dict[str, Any]) -> dict[str, Any]:
        """Relay a task process's durable call; errors become ``{"_status", "error"}``."""
        try:
            answer = await self.api.durable(
                job.attempt_id,
                op,
                {"run_id": job.run_id, **body},
                give_up_after=self._heartbeat_interval * 20,
            )
        except StaleReport as exc:
            return {"_status": 409, "error": str(exc)}
        except ApiError as exc:
            return {"_status": exc.status, "error": str(exc)}
        except TRANSPORT_ERRORS as exc:
            return {"_status": 503, "error": f"the server could not be reached: {exc}"}
        if op == "wait" and answer.get("status") == "suspended":
            self._suspended.add(job.attempt_id)
        return dict(answer)

    # -- heartbeats and logs ---------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        assert self.pool is not None
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                held = list(self._executing | self._waiting | self._reporting)
                stop = await self.api.heartbeat(
                    self.worker_id, held, within=self._heartbeat_interval * HEARTBEAT_PATIENCE
                )
            except (*TRANSPORT_ERRORS, ApiError, StaleReport) as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            for attempt_id in stop:
                if attempt_id in self._suspended:
                    continue  # parked on purpose; the task process is just unwinding
                if attempt_id in self._reporting:
                    # its report's answer says whether it still counted; a stop here
                    # mostly means the server recorded the report already
                    continue
                if attempt_id in self._running and attempt_id not in self._abandoned:
                    log.info("stopping attempt %s at the server's request", attempt_id)
                    self._abandoned.add(attempt_id)
                    await self.pool.cancel(attempt_id)

    def _on_log(self, attempt_id: str, record: dict[str, Any]) -> None:
        record["message"] = redact(str(record.get("message", ""))).replace(
            self._secret, "[redacted]"
        )
        self._log_buffer[attempt_id].append(record)

    def _on_metadata(self, attempt_id: str, operation: dict[str, Any]) -> None:
        self._metadata_buffer[attempt_id].append(operation)

    def _on_span(self, attempt_id: str, span: dict[str, Any]) -> None:
        self._span_buffer[attempt_id].append(span)

    async def _log_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            await self._flush_logs()

    async def _flush_logs(self, attempt_id: str | None = None) -> None:
        """Send buffered metadata operations, task code's spans and log lines (per
        attempt, in order)."""
        for aid in [attempt_id] if attempt_id else list(self._metadata_buffer):
            ops = self._metadata_buffer.pop(aid, None)
            if not ops:
                continue
            try:
                await self.api.metadata(aid, ops)
            except StaleReport:
                pass
            except Exception as exc:
                log.warning("dropping %d metadata update(s) of attempt %s: %s", len(ops), aid, exc)
        for aid in [attempt_id] if attempt_id else list(self._span_buffer):
            spans = self._span_buffer.pop(aid, None)
            if not spans:
                continue
            try:
                await self.api.spans(aid, spans)
            except StaleReport:
                pass
            except Exception as exc:
                log.warning("dropping %d span(s) of attempt %s: %s", len(spans), aid, exc)
        ids = [attempt_id] if attempt_id else list(self._log_buffer)
        for aid in ids:
            lines = self._log_buffer.pop(aid, None)
            if not lines:
                continue
            try:
                await self.api.logs(aid, lines)
            except StaleReport:
                pass
            except Exception as exc:
                log.warning("dropping %d log line(s) of attempt %s: %s", len(lines), aid, exc)


#: what a task that suspended without a wait the server accepted reports (it raised
#: ``RunSuspended`` itself): a failure, retried per policy like any exception
_UNACCEPTED_SUSPEND = Failed(
    ErrorInfo(
        name="RunSuspended",
        message="the task suspended, but the server never accepted a wait of this attempt",
        stack_trace="",
        kind="USER",
    )
)


def _moving_average(average: float | None, sample: float) -> float:
    return sample if average is None else average + 0.3 * (sample - average)
