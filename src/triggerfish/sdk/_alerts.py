"""``client.alerts``: alert rules of the key's environment and their deliveries."""

from __future__ import annotations

from typing import Any

from triggerfish.sdk._calls import Call, Namespace, faces


def _add(
    name: str,
    kind: str,
    channel: str,
    target: str,
    *,
    config: dict[str, Any] | None = None,
    throttle: float = 300.0,
) -> Call[dict[str, Any]]:
    """Add an alert rule; the answer holds the rule and, for a webhook, the secret that
    signs its deliveries (shown once).

    Example: ``client.alerts.add("failures", "RUN_FAILED", "SLACK", slack_url)``.
    """
    body = {
        "name": name,
        "kind": kind,
        "channel": channel,
        "target": target,
        "config": config or {},
        "throttle": throttle,
    }
    return Call("POST", "/api/v1/alerts", dict, json=body)


def _list() -> Call[list[dict[str, Any]]]:
    """The environment's alert rules."""
    return Call("GET", "/api/v1/alerts", lambda b: list(b["data"]))


def _remove(rule_id: str) -> Call[dict[str, Any]]:
    """Delete an alert rule."""
    return Call("DELETE", f"/api/v1/alerts/{rule_id}", dict)


def _deliveries(limit: int = 100) -> Call[list[dict[str, Any]]]:
    """The latest alert deliveries, newest first: status, count, attempts, last error."""
    return Call(
        "GET", "/api/v1/alerts/deliveries", lambda b: list(b["data"]), params={"limit": limit}
    )


class Alerts(Namespace):
    """``client.alerts``: rules (add, list, remove) and their deliveries."""

    add, add_async = faces(_add)
    list, list_async = faces(_list)
    remove, remove_async = faces(_remove)
    deliveries, deliveries_async = faces(_deliveries)
