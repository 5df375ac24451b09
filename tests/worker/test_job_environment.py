"""What a claimed run's variables become in the task process: the strip list applies,
they last for the attempt, and what they replaced comes back."""

from __future__ import annotations

import os

import pytest

from triggerfish.worker._child import _restore_environment, _set_attempt_environment
from triggerfish.worker.api_client import _claimed_run

CLAIM = {
    "run_id": "run_1",
    "attempt_id": "att_1",
    "attempt_number": 1,
    "task_id": "t",
    "environment": {"id": "env_1", "slug": "dev"},
    "machine": "micro",
}


def test_the_strip_list_applies_to_the_variables_a_claim_carries() -> None:
    env_vars = {
        "API_URL": "https://x.test",
        "TRIGGER_SECRET_KEY": "anything",
        "STRAY": "tr_prod_abcdefghijklmnopqrstuvwx",
    }
    job = _claimed_run({**CLAIM, "env_vars": env_vars}, None, "http://s").job
    assert job.env_vars == (("API_URL", "https://x.test"),)


def test_variables_last_for_one_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEPT", "the worker's")
    monkeypatch.delenv("ADDED", raising=False)
    saved = _set_attempt_environment((("KEPT", "the environment's"), ("ADDED", "1")))
    assert (os.environ["KEPT"], os.environ["ADDED"]) == ("the environment's", "1")
    _restore_environment(saved)
    assert os.environ["KEPT"] == "the worker's" and "ADDED" not in os.environ
