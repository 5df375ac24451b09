"""The worker socket against a real server: same answers as HTTP, clear refusals, fallback."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from websockets.asyncio.client import connect

from tests import support
from tests.api.conftest import Served
from triggerfish._channel import Channel, ChannelUnavailable
from triggerfish._domain.attempts import Decision, ErrorInfo, Failed, Succeeded
from triggerfish.engine import Engine
from triggerfish.errors import ApiError
from triggerfish.worker.api_client import (
    ClaimedRun,
    ClaimRequest,
    CompletionReport,
    StaleReport,
    StartReport,
    WorkerApi,
)


async def test_claims_and_reports_travel_over_the_socket(served: Served) -> None:
    first, second, third = await served.trigger(3)
    claimed = await served.api.dequeue(served.worker_id, 2, 0, start=2)
    assert [r.job.run_id for r in claimed] == [first, second]
    assert all(r.started for r in claimed)
    assert await served.status(first) == "EXECUTING"

    completions = [
        CompletionReport(first, claimed[0].job.attempt_id, Succeeded(1)),
        CompletionReport(second, claimed[1].job.attempt_id, Succeeded(2)),
    ]
    claim = ClaimRequest(served.worker_id, max=2, start=2)
    answer = await served.api.reports([], completions, claim, give_up_after=5)
    assert [c.status for c in answer.completions] == ["COMPLETED", "COMPLETED"]
    assert [r.job.run_id for r in answer.runs] == [third]
    assert await served.status(first) == "COMPLETED"

    # the same report again changes nothing and says so, item by item
    again = await served.api.reports([], completions, give_up_after=5)
    assert [(c.stale, c.status) for c in again.completions] == [(True, None), (True, None)]


async def test_a_claimed_run_arrives_typed_with_what_its_attempt_needs(served: Served) -> None:
    [run_id] = await served.trigger(1)
    [run] = await served.api.dequeue(served.worker_id, 1, 0, start=0)
    job = run.job
    assert (job.run_id, job.task_id, job.attempt_number, run.started) == (run_id, "job", 1, False)
    assert (job.payload, job.tags, job.machine, list(job.journal)) == ({"i": 0}, (), "micro", [])
    assert (job.environment.slug, job.max_duration, job.api_url) == ("dev", None, served.url)
    assert job.credential.startswith("tfa_") and job.direct == served.api.direct_link()
    answer = await served.api.reports([StartReport(run_id, job.attempt_id)], [], give_up_after=5)
    assert [(s.attempt_id, s.status) for s in answer.starts] == [(job.attempt_id, "EXECUTING")]
    assert answer.runs == []


async def test_failures_reach_the_server_with_their_kind_error_and_decision(
    served: Served,
) -> None:
    retried, ended = await served.trigger(2)
    claimed = await served.api.dequeue(served.worker_id, 2, 0, start=2)
    attempts = {r.job.run_id: r.job.attempt_id for r in claimed}
    error = ErrorInfo("ValueError", "bad input", "Traceback: ...", "USER")
    completions = [
        CompletionReport(retried, attempts[retried], Failed(error)),
        CompletionReport(ended, attempts[ended], Failed(error, Decision("fail"))),
    ]
    answer = await served.api.reports([], completions, give_up_after=5)
    # the task retries (three attempts); the hook's "fail" ends the other run at once
    assert [c.status for c in answer.completions] == ["QUEUED", "FAILED"]
    assert answer.completions[0].retry_at is not None
    r = await served.http.get(f"/api/v3/runs/{ended}")
    assert r.json()["error"]["name"] == "ValueError"
    assert r.json()["error"]["message"] == "bad input"


async def _polling(served: Served, engine: Engine) -> asyncio.Task[list[ClaimedRun]]:
    """A long poll of the worker's, once it waits on the server."""
    claims = support.claims_counted(engine)
    looked = claims.finished
    polling = asyncio.create_task(served.api.dequeue(served.worker_id, 1, 10, start=1))
    await support.wait_for_async(lambda: claims.finished > looked, 10, what="the poll to wait")
    return polling


async def test_a_long_poll_is_answered_when_a_run_arrives(served: Served, engine: Engine) -> None:
    polling = await _polling(served, engine)
    assert not polling.done()
    [run_id] = await served.trigger(1)
    runs = await asyncio.wait_for(polling, 10)
    assert [r.job.run_id for r in runs] == [run_id]


async def test_a_long_poll_given_up_by_the_worker_claims_nothing(
    served: Served, engine: Engine
) -> None:
    polling = await _polling(served, engine)
    polling.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await polling
    # frames are handled in order: once this is answered the poll is gone
    await served.api.heartbeat(served.worker_id, [])
    [run_id] = await served.trigger(1)
    assert await served.status(run_id) == "QUEUED"
    [run] = await served.api.dequeue(served.worker_id, 1, 0, start=1)
    assert run.job.run_id == run_id and run.job.attempt_number == 1


async def test_a_durable_call_of_a_stale_attempt_is_refused(served: Served) -> None:
    [run_id] = await served.trigger(1)
    [run] = await served.api.dequeue(served.worker_id, 1, 0, start=1)
    entry = {"run_id": run_id, "seq": 0, "kind": "step", "name": "a", "status": "OK"}
    assert await served.api.durable(run.job.attempt_id, "journal", entry, give_up_after=5) == {
        "ok": True
    }
    r = await served.http.post(f"/api/v2/runs/{run_id}/cancel")
    assert r.status_code == 200, r.text
    with pytest.raises(StaleReport):
        await served.api.durable(run.job.attempt_id, "journal", entry, give_up_after=5)


async def test_a_call_too_large_for_a_frame_goes_as_a_request(served: Served) -> None:
    [run_id] = await served.trigger(1)
    [run] = await served.api.dequeue(served.worker_id, 1, 0, start=1)
    served.api.limit_frames(2_000)  # as if the server took small frames only
    entry = {"run_id": run_id, "seq": 0, "kind": "step", "name": "a", "status": "OK"}
    big = {**entry, "result": "x" * 5_000}
    assert await served.api.durable(run.job.attempt_id, "journal", big, give_up_after=5) == {
        "ok": True
    }
    # too large for a request as well: the body limit answers at once, nothing retried
    huge = {**entry, "seq": 1, "result": "x" * (5 * 1024 * 1024)}
    with pytest.raises(ApiError) as refused:
        await served.api.durable(run.job.attempt_id, "journal", huge, give_up_after=30)
    assert refused.value.status == 413
    # the socket carries on
    assert await served.api.heartbeat(served.worker_id, [run.job.attempt_id]) == []


async def test_bad_calls_get_an_error_naming_what_is_wrong(served: Served) -> None:
    channel = Channel(served.url, served.key)
    try:
        with pytest.raises(ApiError) as empty:
            await channel.call("reports", {"starts": [], "completions": []})
        assert empty.value.status == 422 and "starts, completions" in str(empty.value)

        with pytest.raises(ApiError) as wrong_type:
            await channel.call("heartbeat", {"worker_id": served.worker_id, "attempt_ids": 3})
        assert wrong_type.value.status == 422 and "attempt_ids" in str(wrong_type.value)

        with pytest.raises(ApiError) as unknown:
            await channel.call("explode", {})
        assert unknown.value.status == 400 and "op: unknown call 'explode'" in str(unknown.value)

        with pytest.raises(ApiError) as no_attempt:
            await channel.call(
                "journal", {"run_id": "r", "seq": 0, "kind": "step", "name": "a", "status": "OK"}
            )
        assert no_attempt.value.status == 400 and "attempt_id" in str(no_attempt.value)

        # frames that are not a JSON object get an answer too, without an id
        async with connect(channel.url, additional_headers=channel_headers(served)) as raw:
            await raw.send(b"\x00binary")
            assert json.loads(await raw.recv()) == {
                "id": None,
                "status": 400,
                "error": "a call is a JSON text frame, not a binary one",
            }
            await raw.send("[1, 2]")
            assert json.loads(await raw.recv())["status"] == 400
            await raw.send("{not json")
            answer = json.loads(await raw.recv())
            assert answer["status"] == 400 and "malformed JSON" in answer["error"]

        # the connection survives refusals: a good call still works
        answer = await channel.call("heartbeat", {"worker_id": served.worker_id, "attempt_ids": []})
        assert answer == {"stop": []}
    finally:
        await channel.close()


def channel_headers(served: Served) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.key}"}


async def test_a_closed_socket_is_opened_again(served: Served) -> None:
    await served.api.heartbeat(served.worker_id, [])
    channel = Channel(served.url, served.key)
    try:
        await channel.call("heartbeat", {"worker_id": served.worker_id, "attempt_ids": []})
        await channel.close()
        answer = await channel.call("heartbeat", {"worker_id": served.worker_id, "attempt_ids": []})
        assert answer == {"stop": []}
    finally:
        await channel.close()


async def test_an_unknown_key_is_refused_at_the_handshake(served: Served) -> None:
    channel = Channel(served.url, "tr_dev_not_a_key")
    with pytest.raises(ChannelUnavailable, match="403"):
        await channel.call("heartbeat", {"worker_id": served.worker_id, "attempt_ids": []})

    # a worker falls back to HTTP, which says what is wrong with the key
    api = WorkerApi(served.url, "tr_dev_not_a_key")
    try:
        with pytest.raises(ApiError) as refused:
            await api.heartbeat(served.worker_id, [])
        assert refused.value.status == 401 and "Invalid API Key" in str(refused.value)
    finally:
        await api.close()


async def test_a_worker_without_the_socket_uses_http(served: Served) -> None:
    api = WorkerApi(served.url, served.key, socket=False)
    try:
        [run_id] = await served.trigger(1)
        [run] = await api.dequeue(served.worker_id, 1, 0, start=1)
        assert run.job.direct is None  # a worker talking HTTP: the task process relays
        completion = CompletionReport(run_id, run.job.attempt_id, Succeeded(None))
        answer = await api.reports([], [completion], give_up_after=5)
        assert answer.completions[0].status == "COMPLETED"
    finally:
        await api.close()
