"""What a type checker sees of the public API. Checked by mypy (``tests/test_typing.py``),
never run: each ``assert_type`` is a claim about an inferred type, and each
``type: ignore[code]`` one about an error (strict mypy reports an unneeded one).
"""

from __future__ import annotations

from typing import Any, assert_type

import pydantic

import triggerfish
from triggerfish import (
    BatchItem,
    Context,
    Run,
    RunHandle,
    Task,
    Triggerfish,
    WaitResult,
    WaitToken,
    envvars,
    events,
    kv,
    schedules,
    task,
    wait,
)
from triggerfish.sdk._envvars import EnvVar, Uploaded
from triggerfish.sdk._wait import WaitResults


class Email(pydantic.BaseModel):
    to: str


class Receipt(pydantic.BaseModel):
    id: str


# -- @task reads the payload and output types off the function ---------------------


@task(id="send")
def send(payload: Email) -> Receipt:
    return Receipt(id=payload.to)


@task(id="send-async")
async def send_async(payload: Email) -> Receipt:
    return Receipt(id=payload.to)


@task(id="send-ctx")
def send_ctx(payload: Email, ctx: Context) -> int:
    return len(ctx.run.id)


@task(id="send-async-ctx")
async def send_async_ctx(payload: dict[str, int], ctx: Context) -> None:
    return None


@schedules.task(id="nightly", cron="0 3 * * *")
def nightly(payload: schedules.ScheduledPayload) -> str:
    return payload.schedule_id


assert_type(send, Task[Email, Receipt])
assert_type(send_async, Task[Email, Receipt])
assert_type(send_ctx, Task[Email, int])
assert_type(send_async_ctx, Task[dict[str, int], None])
assert_type(nightly, Task[schedules.ScheduledPayload, str])


# -- trigger: the payload type and a typed set of options --------------------------


def triggering() -> None:
    assert_type(send.trigger(Email(to="a"), tags=["x"], delay="5m", priority=10), RunHandle)
    send.trigger(Email(to="a"), tagz=["x"])  # type: ignore[call-arg]
    send.trigger(Email(to="a"), max_attempts="3")  # type: ignore[arg-type]
    send.trigger("not an email")  # type: ignore[arg-type]
    send.trigger(Email(to="a"), client=Triggerfish(secret_key="tr_dev_x"))
    send.trigger(Email(to="a"), debounce={"key": "k", "delay": "5s", "mode": "leading"})
    triggerfish.tasks.trigger("send", {"to": "a"}, idempotency_key="k")
    triggerfish.tasks.trigger("send", {"to": "a"}, idempotency="k")  # type: ignore[call-arg]


async def triggering_async() -> None:
    assert_type(await send.trigger_async(Email(to="a"), ttl="1h"), RunHandle)


# -- inside tasks: typed results of waits, awaited or not --------------------------


@task(id="parent")
def parent(payload: None) -> str:
    result = send.trigger_and_wait(Email(to="a"), timeout="1h", cancel_with_parent=False)
    assert_type(result, WaitResult[Receipt])
    assert_type(result.unwrap(), Receipt)
    assert_type(result.output, Receipt | None)
    send.trigger_and_wait(Email(to="a"), timeuot="1h")  # type: ignore[call-arg]
    many = send.batch_trigger_and_wait([Email(to="b"), BatchItem(Email(to="c"), tags=["c"])])
    assert_type(many, WaitResults[Receipt])
    assert_type(many[0], WaitResult[Receipt])
    token = wait.create_token(timeout="1h")
    assert_type(token, WaitToken)
    assert_type(wait.for_token(token), WaitResult[Any])
    assert_type(wait.for_event("order.paid", match={"id": 1}), WaitResult[dict[str, Any]])
    wait.for_(minutes=5)
    assert_type(kv.get("k"), Any)
    assert_type(kv.delete("k"), bool)
    assert_type(events.send("user.created", {"id": 1}), dict[str, Any])
    return result.unwrap().id


@task(id="async-parent")
async def async_parent(payload: None) -> str:
    result = await send_async.trigger_and_wait(Email(to="a"))
    assert_type(result, WaitResult[Receipt])
    assert_type(await send.batch_trigger_and_wait([Email(to="b")]), WaitResults[Receipt])
    token = await wait.create_token()
    assert_type(token, WaitToken)
    assert_type(await wait.for_token(token), WaitResult[Any])
    await wait.for_(seconds=1)
    await wait.until(token_deadline())
    assert_type(await kv.get_async("k", default=0), Any)
    assert_type(await kv.set_async("k", 1, ttl="1h"), None)
    assert_type(await events.send_async("user.created", id="e1"), dict[str, Any])
    return result.unwrap().id


def token_deadline() -> Any:
    return None


# -- the client: each call's sync and async faces share one signature --------------


async def client_calls(c: Triggerfish) -> None:
    assert_type(c.runs.retrieve("run_1"), Run)
    assert_type(await c.runs.retrieve_async("run_1"), Run)
    c.runs.retrieve(1)  # type: ignore[arg-type]
    await c.runs.retrieve_async(1)  # type: ignore[arg-type]
    assert_type(c.runs.replay("run_1", from_step=2), RunHandle)
    assert_type(c.runs.list(status="COMPLETED", limit=5).data, list[Run])
    c.runs.list(stauts="COMPLETED")  # type: ignore[call-arg]
    assert_type(await c.runs.update_metadata_async("run_1", {"a": 1}), dict[str, Any])
    assert_type(await c.runs.add_tags_async("run_1", ["x"]), None)
    assert_type(await c.kv.get_async("k"), Any)
    assert_type(await c.events.send_async("e"), dict[str, Any])
    assert_type(await c.environment.doctor_async(), dict[str, Any])
    await c.queues.set_rate_limit_async("emails", 10, "1m")
    assert_type(c.tasks.trigger("send", {"to": "a"}, tags=["x"]), RunHandle)
    assert_type(c.schedules.retrieve("sched_1"), schedules.Schedule)
    assert_type(triggerfish.runs.poll("run_1"), Run)


async def schedule_calls() -> None:
    assert_type(schedules.create(task="sync", cron="0 * * * *"), schedules.Schedule)
    schedules.create(task="sync", corn="0 * * * *")  # type: ignore[call-arg]
    assert_type(schedules.list(page=2).data, list[schedules.Schedule])
    assert_type(await schedules.timezones_async(), list[str])
    assert_type(await schedules.retrieve_async("s"), schedules.Schedule)


async def schedule_calls_with_a_client(c: Triggerfish) -> None:
    """``client=`` is part of every module-level schedule call's type."""
    assert_type(schedules.create(task="sync", cron="0 * * * *", client=c), schedules.Schedule)
    assert_type(schedules.retrieve("s", client=c), schedules.Schedule)
    assert_type(schedules.list(page=2, client=c), schedules.SchedulePage)
    assert_type(schedules.update("s", cron="0 9 * * *", client=c), schedules.Schedule)
    assert_type(schedules.delete("s", client=None), str)
    assert_type(schedules.activate("s", client=c), schedules.Schedule)
    assert_type(schedules.deactivate("s", client=c), schedules.Schedule)
    assert_type(schedules.timezones(exclude_utc=True, client=c), list[str])
    assert_type(
        await schedules.create_async(task="t", cron="* * * * *", client=c), schedules.Schedule
    )
    assert_type(await schedules.timezones_async(client=c), list[str])
    schedules.retrieve("s", client="not a client")  # type: ignore[arg-type]
    schedules.retrieve("s", clinet=c)  # type: ignore[call-arg]
    schedules.retrieve("s", c)  # type: ignore[misc]  # keyword-only


async def kv_and_event_calls_with_a_client(c: Triggerfish) -> None:
    """``client=`` is part of every module-level ``kv`` and ``events`` call's type."""
    assert_type(kv.get("k", client=c), Any)
    assert_type(kv.get("k", 0, client=None), Any)
    assert_type(kv.set("k", {"v": 1}, ttl="1h", client=c), None)
    assert_type(kv.delete("k", client=c), bool)
    assert_type(await kv.get_async("k", default=0, client=c), Any)
    assert_type(await kv.set_async("k", 1, ttl=60, client=c), None)
    assert_type(await kv.delete_async("k", client=c), bool)
    assert_type(events.send("user.created", {"id": 1}, id="e1", client=c), dict[str, Any])
    assert_type(await events.send_async("user.created", client=c), dict[str, Any])
    kv.get("k", clinet=c)  # type: ignore[call-arg]
    kv.set("k", 1, tll="1h")  # type: ignore[call-arg]
    await kv.delete_async("k", client="not a client")  # type: ignore[arg-type]
    kv.get("k", None, c)  # type: ignore[misc]  # keyword-only
    events.send("user.created", idd="e1")  # type: ignore[call-arg]
    await events.send_async("user.created", clinet=c)  # type: ignore[call-arg]


async def envvar_calls_with_a_client(c: Triggerfish) -> None:
    """``client=`` is part of every module-level ``envvars`` call's type."""
    assert_type(envvars.list(client=c), list[EnvVar])
    assert_type(envvars.retrieve("API_URL", client=c), EnvVar)
    assert_type(envvars.set("API_URL", "https://x", secret=True, client=c), None)
    assert_type(envvars.delete("API_URL", client=None), None)
    assert_type(envvars.upload({"A": "1"}, override=True, client=c), Uploaded)
    assert_type(await envvars.list_async(client=c), list[EnvVar])
    assert_type(await envvars.retrieve_async("API_URL", client=c), EnvVar)
    assert_type(await envvars.set_async("API_URL", "x", client=c), None)
    assert_type(await envvars.delete_async("API_URL", client=c), None)
    assert_type(await envvars.upload_async({"A": "1"}, secret=True, client=c), Uploaded)
    envvars.list(clinet=c)  # type: ignore[call-arg]
    envvars.set("A", "1", secrett=True)  # type: ignore[call-arg]
    envvars.retrieve("A", client="not a client")  # type: ignore[arg-type]
    envvars.delete("A", c)  # type: ignore[misc]  # keyword-only
    await envvars.upload_async({"A": "1"}, overide=True)  # type: ignore[call-arg]
