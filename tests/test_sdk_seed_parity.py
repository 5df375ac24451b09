"""What the design's examples call on tasks and the logger, without a server:
``task.batch_trigger``, ``logger.info(..., message=)``, and what ``runs show``
prints for steps with display fields and a retry history."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

import triggerfish
from tests.test_sdk_calls import Recorder
from triggerfish import BatchItem, logger
from triggerfish.cli._common import console
from triggerfish.cli.runs import print_run
from triggerfish.sdk import _logger
from triggerfish.sdk._client import Run, Triggerfish
from triggerfish.sdk._registry import TaskRegistry, collecting_into
from triggerfish.sdk._tasks import Tasks

T = TypeVar("T")


class Email(BaseModel):
    to: str


def test_a_task_batch_triggers_its_items_with_shared_and_own_options() -> None:
    with collecting_into(TaskRegistry()):

        @triggerfish.task(id="send-email")
        def send(payload: Email) -> None:
            return None

    client = Triggerfish(secret_key="tr_dev_x", socket=False)
    recorder = Recorder({"id": "batch_1", "runs": ["run_a", "run_b"]})
    client.tasks = Tasks(recorder)
    items: list[Email | BatchItem] = [Email(to="a@x"), BatchItem(Email(to="b@x"), tags=["vip"])]
    batch = send.batch_trigger(items, client=client, tags=["bulk"], priority=5)
    assert batch.id == "batch_1" and batch.run_ids == ["run_a", "run_b"]
    [call] = recorder.calls
    assert call.path == "/api/v2/tasks/batch"
    assert call.json == {
        "items": [
            {
                "task": "send-email",
                "payload": {"to": "a@x"},
                "options": {"tags": ["bulk"], "priority": 5},
            },
            {
                "task": "send-email",
                "payload": {"to": "b@x"},
                "options": {"tags": ["vip"], "priority": 5},
            },
        ]
    }


def test_the_logger_takes_a_field_called_message() -> None:
    lines: list[dict[str, Any]] = []
    _logger.set_sink(lines.append)
    try:
        logger.info("received", message="hello", level="x")
        logger.error("failed", message="boom")
    finally:
        _logger.set_sink(None)
    assert [(line["message"], line["fields"]) for line in lines] == [
        ("received", {"message": "hello", "level": "x"}),
        ("failed", {"message": "boom"}),
    ]


def test_runs_show_prints_display_fields_and_the_retry_history() -> None:
    run = Run.model_validate(
        {
            "id": "run_1",
            "status": "COMPLETED",
            "taskIdentifier": "retry-demo",
            "createdAt": "2026-01-01T00:00:00.000Z",
            "updatedAt": "2026-01-01T00:00:03.000Z",
            "isCompleted": True,
            "isSuccess": True,
            "isFailed": False,
            "attemptCount": 1,
            "steps": [
                {
                    "index": 1,
                    "kind": "step",
                    "name": "summarise",
                    "status": "OK",
                    "failures": 2,
                    "display": {"name": "LLM call 3", "icon": "openai", "properties": {"m": "x"}},
                    "tries": [
                        {
                            "number": 1,
                            "at": "2026-01-01T00:00:01.000Z",
                            "error": {"name": "E", "message": "rate limited"},
                        },
                        {
                            "number": 2,
                            "at": "2026-01-01T00:00:02.000Z",
                            "error": {"name": "E", "message": "timeout"},
                        },
                    ],
                }
            ],
        }
    )
    with console.capture() as captured:
        print_run(run)
    text = captured.get()
    assert "LLM call 3" in text and "[openai]" in text
    assert "try 1 failed at 2026-01-01T00:00:01.000Z: E: rate limited" in text
    assert "try 2 failed" in text and "timeout" in text
