"""Secrets kept out of what gets stored and out of task processes.

Two lists live here, used by the worker and the server alike (no engine needed):

- :func:`redact` blanks secrets out of text that gets stored (log lines),
  whoever printed them: Triggerfish API keys of any environment and attempt
  credentials, the usual third-party key shapes, bearer tokens, JWTs,
  passwords in URLs and ``password=…``-style assignments.
- :func:`task_environment` is the environment a task process starts with:
  the worker's own, less :data:`PRIVATE_ENV_NAMES` and any value shaped like
  a Triggerfish API key.

Example::

    redact("key is tr_dev_abcdefghijklmnopqrstuvwx")  # -> "key is [redacted]"
    redact("password=hunter2 user=ada")               # -> "password=[redacted] user=ada"
"""

from __future__ import annotations

import re
from collections.abc import Mapping

REDACTED = "[redacted]"

#: names a task process never gets, whatever their value
PRIVATE_ENV_NAMES = frozenset(
    {
        "TRIGGERFISH_SECRET_KEY",
        "TRIGGER_SECRET_KEY",
        "TRIGGERFISH_ACCESS_TOKEN",
        "TRIGGER_ACCESS_TOKEN",
        "TRIGGERFISH_SERVER_SECRET",
        "DATABASE_URL",
        "TRIGGERFISH_DATABASE_URL",
    }
)

#: a Triggerfish API key of any environment (slugs are ``[a-z0-9-]+``)
_API_KEY = r"tr_[a-z0-9-]+_[A-Za-z0-9_]{16,}"
#: a task process's attempt credential (``engine/environments.py``)
_ATTEMPT_CREDENTIAL = r"tfa_[A-Za-z0-9_]+\.[A-Za-z0-9_-]{20,}"

#: whole-match shapes: the match is replaced by ``[redacted]``
_TOKENS = re.compile(
    "|".join(
        [
            _API_KEY,
            _ATTEMPT_CREDENTIAL,
            r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{10,}",  # Stripe
            r"\bwhsec_[A-Za-z0-9]{16,}",  # Stripe webhook secret
            r"\bsk-[A-Za-z0-9_-]{20,}",  # OpenAI, Anthropic
            r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
            r"\bgithub_pat_[A-Za-z0-9_]{20,}",
            r"\bxox[abprse]-[A-Za-z0-9-]{10,}",  # Slack
            r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",  # AWS access key id
            r"\bAIza[0-9A-Za-z_-]{35}",  # Google API key
            r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+",  # JWT
        ]
    )
)
#: ``Bearer <token>``: the scheme stays, the token goes
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
#: ``scheme://user:password@host``: the password goes
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(@)")
#: ``password=…``, ``"api_key": "…"``, ``aws_secret_access_key = …``: the value goes
_ASSIGNMENT = re.compile(
    r"""(?ix)
    \b((?:password|passwd|pwd|secret|secret_key|api_key|apikey|access_token|auth_token
        |client_secret|aws_secret_access_key|private_key)
       ["']?\s*[:=]\s*)
    ("[^"]*"|'[^']*'|[^\s,;&]+)
    """
)
_API_KEY_VALUE = re.compile(rf"\s*{_API_KEY}\s*")


def redact(text: str) -> str:
    """``text`` with every secret shape listed in this module replaced by ``[redacted]``."""
    text = _TOKENS.sub(REDACTED, text)
    text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
    text = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}\g<2>", text)
    return _ASSIGNMENT.sub(_blank_value, text)


def _blank_value(match: re.Match[str]) -> str:
    value = match.group(2)
    quote = value[0] if value[:1] in {'"', "'"} else ""
    return f"{match.group(1)}{quote}{REDACTED}{quote}"


def task_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a task process may see: ``environ`` less every secret of ours."""
    return {
        name: value
        for name, value in environ.items()
        if name not in PRIVATE_ENV_NAMES and not _API_KEY_VALUE.fullmatch(value)
    }
