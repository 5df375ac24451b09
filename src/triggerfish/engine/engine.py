"""``Engine``: the engine's modules wired together, plus its background loop."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from triggerfish import _otel
from triggerfish.config import ServerSettings
from triggerfish.engine.alerts import Alerts
from triggerfish.engine.attempts import Attempts
from triggerfish.engine.batches import Batches
from triggerfish.engine.changes import ChangeFeed
from triggerfish.engine.dequeue import Dequeue
from triggerfish.engine.enqueue import Enqueue
from triggerfish.engine.environments import Environments
from triggerfish.engine.envvars import EnvVars
from triggerfish.engine.events import Events
from triggerfish.engine.handoff import Handoffs
from triggerfish.engine.journal import Journal
from triggerfish.engine.keyring import Keyring
from triggerfish.engine.maintenance import Maintenance
from triggerfish.engine.manifests import ManifestCache
from triggerfish.engine.metadata import Metadata
from triggerfish.engine.metrics import Metrics
from triggerfish.engine.public_tokens import PublicTokens
from triggerfish.engine.queues import Queues
from triggerfish.engine.replay import Replays
from triggerfish.engine.resources import Clock, EngineResources
from triggerfish.engine.runs import Runs
from triggerfish.engine.schedules import Schedules
from triggerfish.engine.streams import Streams
from triggerfish.engine.traces import Traces
from triggerfish.engine.users import Users
from triggerfish.engine.waitpoints import Waitpoints
from triggerfish.engine.webhooks import Webhooks, load_verifier_modules
from triggerfish.engine.workers import Workers
from triggerfish.store.db import Database


class Engine:
    """Every run rule, composed. The API calls these attributes; nothing else
    touches the store.

    Example (tests drive it directly)::

        engine = Engine.create(ServerSettings(database_url="sqlite:///x.db"))
        await engine.start()
        result = await engine.enqueue.trigger(env_id, TriggerRequest("hello", {}))
    """

    def __init__(self, res: EngineResources) -> None:
        self.res = res
        manifests = ManifestCache()
        self.handoffs = handoffs = Handoffs()
        self.environments = Environments(res)
        self.envvars = EnvVars(res)
        self.journal = Journal(res)
        self.enqueue = Enqueue(res, manifests, handoffs)
        self.waitpoints = Waitpoints(res, self.journal, self.enqueue)
        self.attempts = Attempts(res, manifests, self.waitpoints)
        self.dequeue = Dequeue(res, self.attempts, handoffs)
        self.runs = Runs(res, self.waitpoints)
        self.queues = Queues(res)
        self.batches = Batches(res)
        self.metadata = Metadata(res)
        self.schedules = Schedules(res, self.enqueue)
        self.workers = Workers(res, self.attempts, self.schedules, manifests)
        self.maintenance = Maintenance(res, self.attempts, self.schedules, self.waitpoints)
        self.events = Events(res, self.enqueue, self.waitpoints)
        self.replays = Replays(res, self.enqueue, self.waitpoints)
        self.webhooks = Webhooks(res, self.events)
        load_verifier_modules(res.settings.webhook_verifiers)
        self.users = Users(res)
        self.changes = ChangeFeed(res)
        self.streams = Streams(res)
        self.public_tokens = PublicTokens(res, self.environments)
        self.environments.on_revoke.append(self.public_tokens.forget_keys)
        self.traces = Traces(res)
        self.metrics = Metrics(res, lambda: self.maintenance.lost_leases)
        self.alerts = Alerts(res)
        self._background: list[asyncio.Task[Any]] = []

    async def ping_store(self) -> None:
        """One round trip to the store; ``StoreUnavailable`` while it is away."""
        await self.res.db.ping()

    def report_linger(self) -> float:
        """Seconds a busy worker holds a report batch back (``ServerSettings.report_linger``)."""
        configured = self.res.settings.report_linger
        if configured is not None:
            return configured
        return self.res.db.capabilities.report_linger

    @classmethod
    def create(cls, settings: ServerSettings, clock: Clock | None = None) -> Engine:
        db = Database(settings.database_url, pool_size=settings.pool_size)
        secret = settings.server_secret
        keyring = Keyring.parse(secret.get_secret_value()) if secret else Keyring.ephemeral()
        notifier = db.new_notifier()
        return cls(EngineResources(db, clock or Clock(), notifier, settings, keyring))

    async def start(self, *, background: bool = True) -> None:
        """Check the schema, connect the notifier, start the maintenance loop."""
        await self.res.db.check_migrated()
        self.metrics.time_statements()
        await self.metrics.start_counting()
        await self.res.notifier.start()
        if background:
            self._background.append(asyncio.create_task(self.maintenance.run_forever()))
            self._background.append(asyncio.create_task(self.alerts.run_forever()))
            if _otel.configured():  # the server's share of finished runs' traces
                self.res.db.trace_statements()  # internal spans, sampled
                export = self.traces.export_forever(_otel.send_run_spans)
                self._background.append(asyncio.create_task(export))

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background.clear()
        await self.res.notifier.close()
        await self.res.db.dispose()
