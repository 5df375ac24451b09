"""Integrations: connectors with typed actions (journaled steps) and webhook triggers.

Build one with :class:`Integration`; two ship here, built on the kit:
``triggerfish.integrations.http`` (any HTTP/JSON service) and
``triggerfish.integrations.slack`` (post messages, read channels, receive
slash commands).
"""

from triggerfish.integrations._kit import (
    Action,
    ActionContext,
    ActionValidationError,
    Connection,
    Integration,
    IntegrationTrigger,
)

__all__ = [
    "Action",
    "ActionContext",
    "ActionValidationError",
    "Connection",
    "Integration",
    "IntegrationTrigger",
]
