"""Worker registration: a worker declares its version and tasks, and gets an id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from triggerfish._cron import CronSpec
from triggerfish._domain.records import WorkerRecord
from triggerfish._domain.times import to_datetime
from triggerfish._ids import new_id
from triggerfish.engine.attempts import Attempts
from triggerfish.engine.dequeue import WorkerIdentity
from triggerfish.engine.manifests import ManifestCache
from triggerfish.engine.resources import EngineResources
from triggerfish.engine.schedules import Schedules
from triggerfish.errors import StaleTransition
from triggerfish.store import queues as queue_store
from triggerfish.store import runs as run_store
from triggerfish.store import workers as worker_store
from triggerfish.store.errors import DuplicateKey

#: registrations tried before a conflict with concurrent ones is reported
REGISTER_TRIES = 3


@dataclass
class TaskInfo:
    """A registered task: its newest manifest, and every version that declared it."""

    id: str
    manifest: dict[str, Any]
    #: newest first
    versions: list[str]
    registered_at: datetime


@dataclass(frozen=True)
class RegisteredTask:
    """A task as its newest registered version declares it (``GET /api/v1/tasks``)."""

    id: str
    #: the newest version's manifest: queue, retry, machine, schedule, file…
    manifest: dict[str, Any]
    #: (version, registered at), newest first
    versions: list[tuple[str, datetime]]
    #: workers online now that serve it (0: triggered runs wait for one)
    workers_online: int


@dataclass(frozen=True, slots=True)
class ImportProblem:
    """A task file a worker could not import: its tasks are not served."""

    #: the file's path from the project's root
    file: str
    error: str
    #: the last lines of the error's traceback
    lines: tuple[str, ...] = ()


class Workers:
    def __init__(
        self,
        res: EngineResources,
        attempts: Attempts,
        schedules: Schedules,
        manifests: ManifestCache,
    ) -> None:
        self.res = res
        self.manifests = manifests
        self.attempts = attempts
        self.schedules = schedules
        self._identities: dict[str, WorkerIdentity] = {}
        #: worker id -> (environment id, the task files it could not import); kept
        #: in this server's memory: a worker sends them once, when it registers
        self._import_errors: dict[str, tuple[str, tuple[ImportProblem, ...]]] = {}

    async def register(
        self,
        env_id: str,
        *,
        version: str,
        name: str,
        concurrency: int,
        tasks: list[dict[str, Any]],
        environment: dict[str, Any] | None = None,
        import_errors: Sequence[ImportProblem] = (),
    ) -> WorkerIdentity:
        """Record a worker and its tasks. ``environment`` is what the project's
        configuration declares for its environment (``{"concurrency_limit": n | None}``):
        the default limit, which a limit set at run time overrides until reset.
        ``import_errors``: the task files it could not import (see :meth:`import_errors`)."""
        now = self.res.clock.now()
        worker_id = new_id("worker", now)
        declared = self.schedules.declared(tasks)  # a bad cron refuses the worker (422)
        for tries_left in reversed(range(REGISTER_TRIES)):
            try:
                await self._store_registration(
                    env_id, worker_id, version, name, concurrency, tasks, declared, now, environment
                )
                break
            except DuplicateKey:
                # workers of new code starting together insert the same task versions
                # and declarative schedules; the loser's retry finds them in place
                if not tries_left:
                    raise
        self.manifests.forget(env_id)
        if import_errors:
            self._import_errors[worker_id] = (env_id, tuple(import_errors))
        identity = WorkerIdentity(worker_id, env_id, version, tuple(t["id"] for t in tasks))
        self._identities[worker_id] = identity
        await self.res.notifier.notify(env_id)
        return identity

    async def _store_registration(
        self,
        env_id: str,
        worker_id: str,
        version: str,
        name: str,
        concurrency: int,
        tasks: list[dict[str, Any]],
        declared: dict[str, CronSpec],
        now: float,
        environment: dict[str, Any] | None = None,
    ) -> None:
        async with self.res.db.write() as conn:
            if environment is not None and "concurrency_limit" in environment:
                await queue_store.declare_environment_limit(
                    conn, env_id, environment["concurrency_limit"]
                )
            await worker_store.upsert_task_versions(conn, env_id, version, tasks, to_datetime(now))
            await self.schedules.sync_declarative(conn, env_id, tasks, declared, now)
            await worker_store.ensure_queues(
                conn, env_id, [t["queue"] for t in tasks], to_datetime(now), update_limits=True
            )
            await worker_store.insert_worker(
                conn,
                WorkerRecord(
                    id=worker_id,
                    environment_id=env_id,
                    version=version,
                    name=name,
                    concurrency=concurrency,
                    tasks=[t["id"] for t in tasks],
                    started_at=to_datetime(now),
                    last_seen_at=now,
                    stopped_at=None,
                ),
            )

    async def identity(self, env_id: str, worker_id: str) -> WorkerIdentity:
        """The registered worker, checked to belong to the caller's environment."""
        known = self._identities.get(worker_id)
        if known is None:
            async with self.res.db.read() as conn:
                row = await worker_store.get_worker(conn, worker_id)
            if row is None or row.stopped_at is not None:
                raise StaleTransition(worker_id, "serve", None)
            known = WorkerIdentity(row.id, row.environment_id, row.version, tuple(row.tasks))
            self._identities[worker_id] = known
        if known.environment_id != env_id:
            raise StaleTransition(worker_id, "serve", None)
        return known

    async def registered(self, env_id: str) -> list[RegisteredTask]:
        """Every task registered in ``env_id``, by id, with its versions."""
        since = self.res.clock.now() - self.res.settings.heartbeat_timeout
        async with self.res.db.read() as conn:
            rows = await worker_store.task_versions_of(conn, env_id)
            online = await worker_store.online_workers(conn, env_id, since)
        serving: dict[str, int] = {}
        for w in online:
            for task_id in set(w.tasks):
                serving[task_id] = serving.get(task_id, 0) + 1
        found: dict[str, RegisteredTask] = {}
        for row in rows:  # newest first: the first row of a task is its manifest
            known = found.get(row.task_identifier)
            if known is None:
                known = found[row.task_identifier] = RegisteredTask(
                    row.task_identifier, row.manifest, [], serving.get(row.task_identifier, 0)
                )
            known.versions.append((row.version, row.registered_at))
        return [found[k] for k in sorted(found)]

    async def online(self, env_id: str, since: float) -> list[WorkerIdentity]:
        """Workers of ``env_id`` that have not stopped and were seen at ``since`` or later."""
        async with self.res.db.read() as conn:
            rows = await worker_store.online_workers(conn, env_id, since)
        return [WorkerIdentity(r.id, r.environment_id, r.version, tuple(r.tasks)) for r in rows]

    async def tasks(self, env_id: str) -> list[TaskInfo]:
        """Every task registered in ``env_id``: its newest manifest and its versions."""
        async with self.res.db.read() as conn:
            rows = await worker_store.task_versions_of(conn, env_id)
        by_task: dict[str, TaskInfo] = {}
        for r in rows:  # newest first
            info = by_task.get(r.task_identifier)
            if info is None:
                by_task[r.task_identifier] = TaskInfo(
                    r.task_identifier, dict(r.manifest), [r.version], r.registered_at
                )
            else:
                info.versions.append(r.version)
        return sorted(by_task.values(), key=lambda t: t.id)

    async def import_errors(self, env_id: str) -> list[ImportProblem]:
        """The task files that the newest online worker of ``env_id`` could not import.

        The newest worker runs the newest code (``triggerfish dev`` starts one on
        each save): once it imports a fixed file, the error is gone, even while an
        older worker still finishes its runs. Nothing when no worker is online.
        """
        online = await self.online_rows(env_id)
        live = {w.id for w in online}
        for worker_id, (env, _) in list(self._import_errors.items()):
            if env == env_id and worker_id not in live:
                del self._import_errors[worker_id]  # stopped or gone silent
        if not online:
            return []
        newest = max(online, key=lambda w: (w.started_at, w.id))
        return list(self._import_errors.get(newest.id, (env_id, ()))[1])

    async def online_rows(self, env_id: str) -> list[WorkerRecord]:
        """The stored rows of the workers seen within a heartbeat timeout."""
        since = self.res.clock.now() - self.res.settings.heartbeat_timeout
        async with self.res.db.read() as conn:
            return await worker_store.online_workers(conn, env_id, since)

    async def deregister(self, worker_id: str) -> None:
        """Mark the worker stopped and hand back the runs it still holds.

        A stopping worker finishes or releases its attempts before it
        deregisters, so what it still holds it never ran: runs claimed (and
        started by the claim) in a dequeue call it abandoned on its way out.
        They go back to the queue without spending a retry.
        """
        async with self.res.db.write() as conn:
            await worker_store.stop_worker(conn, worker_id, to_datetime(self.res.clock.now()))
            held = await run_store.held_by_worker(conn, worker_id)
        self._identities.pop(worker_id, None)
        self._import_errors.pop(worker_id, None)
        if held:
            await self.attempts.release(held, "held by a worker that stopped")
