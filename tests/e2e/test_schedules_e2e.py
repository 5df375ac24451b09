"""Schedules with real processes: server(s), a worker, the SDK and the CLI.

Slots seconds apart come from the test-only ``schedule_seconds_field`` setting
(6-field cron with a leading seconds field); everything else is the production
path: the maintenance sweep, enqueue, a worker, a child process.
"""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import Any

import pytest

from tests import support
from triggerfish import ApiError, Triggerfish, schedules
from triggerfish.sdk._client import Run

PROJECT = Path(__file__).parent.parent / "e2e_sched_project"
SECONDS = {"TRIGGERFISH_SCHEDULE_SECONDS_FIELD": "true"}


async def async_calls(url: str, key: str) -> tuple[str, bool, bool]:
    """The async twins, on a client of their own (its pool belongs to this loop)."""
    c = Triggerfish(api_url=url, secret_key=key)
    try:
        got = await schedules.retrieve_async("customer_42-tick", client=c)
        page = await c.schedules.list_async(per_page=1)
        zones = await schedules.timezones_async(client=c)
        return got.id, got.active, page.total_pages == 2 and "Asia/Tokyo" in zones
    finally:
        await c.aclose()


def runs_of(client: Triggerfish, task: str) -> list[Run]:
    return client.runs.list(task=task, limit=100).data


def test_every_second_schedule_runs_end_to_end_through_sdk_and_cli(tmp_path: Path) -> None:
    url = support.new_sqlite_database(tmp_path / "store.db")
    key = support.create_key(url)
    server = support.start_server(url, tmp_path, extra_env=SECONDS)
    worker = support.start_worker(server, key, tmp_path, project=PROJECT)
    client = Triggerfish(api_url=server.url, secret_key=key)
    cli_env = {"TRIGGERFISH_API_URL": server.url, "TRIGGERFISH_SECRET_KEY": key}
    try:
        with support.processes_stopped(worker, server):
            # the worker's registration created the declarative schedule
            [declared] = schedules.list(client=client).data
            assert (declared.type, declared.task, declared.cron) == (
                "DECLARATIVE",
                "daily-report",
                "0 9 * * *",
            )
            assert declared.timezone == "America/New_York" and declared.next_run is not None

            with pytest.raises(ApiError) as refused:
                schedules.create(task="plain", cron="* * * * *", client=client)
            assert refused.value.status == 422 and "'plain' is not a scheduled task" in str(
                refused.value
            )

            made = schedules.create(
                task="tick",
                cron="* * * * * *",
                external_id="customer_42",
                deduplication_key="customer_42-tick",
                client=client,
            )
            done = support.wait_for(
                lambda: [r for r in runs_of(client, "tick") if r.status == "COMPLETED"][3:],
                timeout=30,
                what="four completed scheduled runs",
            )
            off = client.schedules.deactivate("customer_42-tick")
            assert not off.active and off.next_run is None
            assert asyncio.run(async_calls(server.url, key)) == (made.id, False, True)

            outputs = [client.runs.retrieve(r.id).output for r in runs_of(client, "tick")]
            outputs = [o for o in outputs if o]
            slots = [o["slot"] for o in outputs]
            assert len(slots) == len(set(slots)) >= 4  # each slot once
            assert all(o["external_id"] == "customer_42" and o["upcoming"] == 5 for o in outputs)
            by_slot = {o["slot"]: o for o in outputs}
            chained = [o for o in outputs if o["previous"] in by_slot]
            assert chained  # lastTimestamp names the slot before
            assert done[0].task_identifier == "tick"

            # the CLI speaks to the same API
            listed = support.cli("schedules", "list", env=cli_env)
            assert listed.returncode == 0, listed.stderr
            assert made.id in listed.stdout and "daily-report" in listed.stdout
            shown = support.cli("schedules", "show", "customer_42-tick", env=cli_env)
            assert "customer_42" in shown.stdout and "no" in shown.stdout
            bad = support.cli(
                "schedules", "create", "--task", "tick", "--cron", "0 25 * * *", env=cli_env
            )
            assert bad.returncode == 1 and "bad hour" in bad.stderr
            zones = support.cli("schedules", "timezones", "--exclude-utc", env=cli_env)
            assert "Europe/Paris" in zones.stdout.split() and "UTC" not in zones.stdout.split()
            deleted = support.cli("schedules", "delete", made.id, env=cli_env)
            assert deleted.returncode == 0 and made.id in deleted.stdout
            assert [s.type for s in client.schedules.list().data] == ["DECLARATIVE"]
    finally:
        client.close()


def test_two_server_processes_on_postgresql_fire_each_slot_once(
    tmp_path: Path, pg_template: str
) -> None:
    """Both servers sweep for due slots; the runs they create are counted, not run
    (a worker registers the tasks and stops, so the servers do all the work)."""
    name = support.new_pg_database(pg_template)
    url = support.pg_url(name)
    key = support.create_key(url)
    servers = [support.start_server(url, tmp_path, extra_env=SECONDS) for _ in range(2)]
    clients = [Triggerfish(api_url=s.url, secret_key=key) for s in servers]
    worker = support.start_worker(servers[0], key, tmp_path, project=PROJECT)
    try:
        with support.processes_stopped(*servers):
            assert worker.terminate() == 0
            for n in range(3):
                clients[1].schedules.create(task="tick", cron="* * * * * *", external_id=str(n))

            def enough() -> list[Any]:
                return runs_of(clients[0], "tick")[11:]

            support.wait_for(enough, timeout=40, what="12 scheduled runs")
            for s in clients[0].schedules.list(task="tick").data:
                clients[0].schedules.deactivate(s.id)
            payloads = [clients[1].runs.retrieve(r.id).payload for r in runs_of(clients[0], "tick")]
            per_slot = collections.Counter((p["externalId"], p["timestamp"]) for p in payloads)
            assert per_slot and max(per_slot.values()) == 1, per_slot.most_common(3)
            assert {e for e, _ in per_slot} == {"0", "1", "2"}
    finally:
        for c in clients:
            c.close()
        support.drop_pg_database(name)
