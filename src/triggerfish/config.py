"""Server and worker settings, read from the environment.

Every setting can be set as ``TRIGGERFISH_<NAME>``; the database URL is also
read from ``DATABASE_URL``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIGGERFISH_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///.triggerfish/dev.db",
        validation_alias=AliasChoices("DATABASE_URL", "TRIGGERFISH_DATABASE_URL"),
    )
    #: the project's ref, as the official SDK's project-scoped calls name it
    #: (``envvars.list("proj_…", "dev")``); unset, the project's id. Also read
    #: from ``TRIGGER_PROJECT_REF``, the variable Trigger.dev's tools use
    project_ref: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "project_ref", "TRIGGERFISH_PROJECT_REF", "TRIGGER_PROJECT_REF"
        ),
    )
    #: the server keyring's secret(s), comma-separated, newest first
    #: (``engine/keyring.py``). Servers sharing a store share it; unset, an
    #: embedded engine makes a random one that only this process knows
    server_secret: SecretStr | None = None
    #: a run whose worker sent no heartbeat for this long is reclaimed
    heartbeat_timeout: float = 30.0
    #: how often background loops (reaper, delays, TTL) look for work
    maintenance_interval: float = 1.0
    #: seconds the change feed keeps a change (realtime subscribers resume within
    #: it); the maintenance loop deletes older ones in bounded batches
    changes_retention: float = 7 * 24 * 3600.0
    #: how often the purges (old changes, expired KV entries, runs past their
    #: retention) run; sooner while a pass found a full batch to delete
    purge_interval: float = Field(default=60.0, gt=0)
    #: days a finished run (with its logs, journal, events) is kept, unless its
    #: environment sets its own (``store/retention.py``)
    retention_days: int = Field(default=30, ge=1, le=36_500)
    #: the longest a worker's dequeue call is held open when there is no work
    dequeue_wait: float = 20.0
    #: seconds a busy worker holds a report batch back so more finished attempts
    #: share its commit (see ``worker/reports.py``); None: 0.002 on PostgreSQL,
    #: where a commit is a round trip and a disk flush, and 0 on SQLite, whose
    #: single writer the next trigger would only wait behind
    report_linger: float | None = Field(default=None, ge=0, le=1)
    #: largest accepted payload, in bytes of JSON
    max_payload_bytes: int = 3 * 1024 * 1024
    #: largest accepted request body
    max_body_bytes: int = 4 * 1024 * 1024
    #: origins whose browser pages may call the bearer-token API (``/api/…`` and
    #: ``/realtime/…``: realtime with a public access token, React hooks),
    #: comma-separated (``https://app.example.com,https://admin.example.com``);
    #: ``*`` (the default) any origin, empty none. Credentials travel in headers,
    #: never cookies, so no origin gains anything without a token; the dashboard
    #: (cookies) and the worker routes never answer cross-origin
    cors_origins: str = "*"
    #: public URL of this server (token callback URLs, dashboard links)
    public_url: str | None = None
    #: database connections per server process
    pool_size: int = 10
    #: seconds a new realtime subscriber waits for its turn to read its first
    #: state (half the pool at most reads at once, so a burst of subscribers
    #: never takes the connections workers report on); past it the subscriber
    #: gets a 503 with ``Retry-After`` and reconnects later
    realtime_admission_timeout: float = Field(default=10.0, gt=0)
    #: bytes of recent changes a server keeps in memory for its live
    #: subscribers (with at most ``ChangeFeed.RECENT`` changes); a subscriber
    #: resuming from further back reads the changes table itself
    changes_window_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    #: what a schedule does when several of its slots passed while no server ran:
    #: "latest" runs the most recent missed slot once; "skip" runs no slot that
    #: is more than schedule_misfire_grace seconds late
    schedule_missed_slots: Literal["latest", "skip"] = "latest"
    #: how late a slot may fire under schedule_missed_slots="skip"
    schedule_misfire_grace: float = 60.0
    #: accept 6-field cron expressions whose first field is the second. For
    #: end-to-end tests that need slots seconds apart; not part of the public API
    schedule_seconds_field: bool = False
    #: journal results larger than this many bytes of JSON are stored out of line
    journal_inline_bytes: int = 64 * 1024
    #: lock a run to the worker version that wrote its first journal entry, so
    #: it only replays on the same code. `triggerfish dev` turns this off: there
    #: every edit is a new version, and a waiting run should resume on the new code
    lock_run_versions: bool = True
    #: modules to import at start that register custom webhook verifiers
    #: (``triggerfish.verifiers.register_verifier``), comma-separated
    webhook_verifiers: str = ""
