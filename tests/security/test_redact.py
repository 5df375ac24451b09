"""Redaction of secrets in log lines, one shape at a time, and the task process's environment."""

from __future__ import annotations

import pytest

from triggerfish._redact import PRIVATE_ENV_NAMES, REDACTED, redact, task_environment

SHAPES = {
    "triggerfish dev key": "tr_dev_abcdefghijklmnopqrstuvwxyz012345",
    "triggerfish key of a custom environment": "tr_eu-west-2_abcdefghijklmnopqrstuvwx",
    "attempt credential": "tfa_attempt_01jabcdefgh.Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eA",
    "stripe live key": "sk_live_51Habcdefghijklmnop",
    "stripe restricted key": "rk_test_51Habcdefghijklmnop",
    "stripe webhook secret": "whsec_abcdefghijklmnopqrstuv",
    "openai key": "sk-proj-abcdefghijklmnopqrstuvwx",
    "anthropic key": "sk-ant-api03-abcdefghijklmnopqrst",
    "github token": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "github fine-grained token": "github_pat_11ABCDEFG0abcdefghijklmn",
    "slack bot token": "xoxb-123456789012-abcdefghijkl",
    "aws access key id": "AKIAIOSFODNN7EXAMPLE",
    "google api key": "AIzaSyA1234567890abcdefghijklmnopqrstuv",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r",
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_each_secret_shape_is_redacted(name: str) -> None:
    secret = SHAPES[name]
    text = redact(f"calling with {secret} now")
    assert secret not in text and text == f"calling with {REDACTED} now"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi_jkl", f"Authorization: Bearer {REDACTED}"),
        ("password=hunter2 user=ada", f"password={REDACTED} user=ada"),
        ('{"api_key": "s3cr3t-value", "n": 1}', f'{{"api_key": "{REDACTED}", "n": 1}}'),
        ("aws_secret_access_key = wJalrXUtnFEMI", f"aws_secret_access_key = {REDACTED}"),
        (
            "postgresql://app:pa55word@db.internal:5432/app",
            f"postgresql://app:{REDACTED}@db.internal:5432/app",
        ),
    ],
)
def test_secret_values_are_redacted_and_their_names_kept(line: str, expected: str) -> None:
    assert redact(line) == expected


@pytest.mark.parametrize(
    "line",
    ["run run_01jabc finished in 2.5s", "tr_dev_short", "tokens: 1234", "the task-list of sk-1"],
)
def test_ordinary_text_is_left_alone(line: str) -> None:
    assert redact(line) == line


def test_the_task_environment_drops_every_private_name_and_key_shaped_value() -> None:
    environ = {name: "anything" for name in PRIVATE_ENV_NAMES}
    environ |= {"MY_KEY": "tr_prod_abcdefghijklmnopqrstuvwx", "HOME": "/home/app", "N": "1"}
    assert task_environment(environ) == {"HOME": "/home/app", "N": "1"}
