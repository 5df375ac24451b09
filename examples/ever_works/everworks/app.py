"""The Ever Works app: its store, its dispatch, and its signed internal API for tasks.

``dispatch_generation`` triggers the ``directory-generation`` task when
Triggerfish is enabled and configured; when it is disabled, has no key, or
cannot be reached, it logs a warning and runs the same generation in-process.
The task reads the directory's context and posts typed commands back through
``/internal/trigger/…`` with ``x-trigger-secret``: the worker never holds the
app's database credentials, and state changes only through commands.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, HTTPException

from everworks.generation import AddItem, Commands, SetStatus, generate
from triggerfish import Triggerfish, callbacks
from triggerfish.errors import ApiError, ConnectionLost, ServerUnreachable

log = logging.getLogger("everworks")


@dataclass
class Directory:
    id: str
    name: str
    categories: list[str]
    status: str = "pending"
    items: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Store:
    """The app's database (in memory here): only ``apply`` changes a directory."""

    directories: dict[str, Directory] = field(default_factory=dict)
    #: the app's History view: each generation and where it ran
    history: list[dict[str, Any]] = field(default_factory=list)
    #: every command applied, with where it came from
    applied: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def context(self, directory_id: str) -> dict[str, Any]:
        d = self.directories[directory_id]
        return {"directory": {"id": d.id, "name": d.name, "categories": d.categories}}

    def apply(self, directory_id: str, commands: Commands, source: str) -> None:
        with self._lock:
            d = self.directories[directory_id]
            for command in commands.commands:
                if isinstance(command, SetStatus):
                    d.status = command.status
                elif isinstance(command, AddItem):
                    d.items.append(command.item.model_dump())
                self.applied.append(
                    {"directory": directory_id, "type": command.type, "source": source}
                )


def process_generation(store: Store, directory_id: str) -> None:
    """The local path: the same generation, its commands applied directly."""
    commands = Commands.model_validate({"commands": generate(store.context(directory_id))})
    store.apply(directory_id, commands, source="local")


def dispatch_generation(
    store: Store, directory_id: str, *, enabled: bool, client: Triggerfish | None
) -> dict[str, Any]:
    """Trigger the task (returns at once) or generate here; records which in the history."""
    if enabled and client is not None:
        try:
            handle = client.tasks.trigger("directory-generation", {"directoryId": directory_id})
        except (ServerUnreachable, ConnectionLost) as exc:
            log.warning("Triggerfish unreachable (%s); generating %s in-process", exc, directory_id)
        except ApiError as exc:
            if exc.status < 500:
                raise
            log.warning(
                "Triggerfish answered %s; generating %s in-process", exc.status, directory_id
            )
        else:
            entry = {"directory": directory_id, "mode": "remote", "runId": handle.id}
            store.history.append(entry)
            return entry
    process_generation(store, directory_id)
    entry = {"directory": directory_id, "mode": "local", "runId": None}
    store.history.append(entry)
    return entry


def create_app(
    store: Store,
    *,
    callback_secret: str,
    trigger_enabled: bool,
    client: Triggerfish | None,
) -> FastAPI:
    app = FastAPI(title="Ever Works (example)")
    verifier = callbacks.CallbackVerifier(callback_secret, scheme="header")
    internal = [Depends(callbacks.fastapi_dependency(verifier))]

    def directory(directory_id: str) -> Directory:
        found = store.directories.get(directory_id)
        if found is None:
            raise HTTPException(404, f"no directory {directory_id!r}")
        return found

    @app.post("/directories/{directory_id}/generate")
    def generate_directory(directory_id: str) -> dict[str, Any]:
        directory(directory_id)
        return dispatch_generation(store, directory_id, enabled=trigger_enabled, client=client)

    @app.get("/directories/{directory_id}")
    def show(directory_id: str) -> dict[str, Any]:
        d = directory(directory_id)
        return {"id": d.id, "status": d.status, "items": d.items}

    @app.get("/history")
    def history() -> list[dict[str, Any]]:
        return store.history

    @app.get("/internal/trigger/directories/{directory_id}/context", dependencies=internal)
    def context(directory_id: str) -> dict[str, Any]:
        directory(directory_id)
        return store.context(directory_id)

    @app.post("/internal/trigger/directories/{directory_id}/commands", dependencies=internal)
    def commands(directory_id: str, body: Commands) -> dict[str, Any]:
        directory(directory_id)
        store.apply(directory_id, body, source="remote")
        return {"applied": len(body.commands)}

    return app
