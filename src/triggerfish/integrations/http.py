"""A generic HTTP/JSON integration: call any JSON API as a journaled step.

Configuration (environment: ``HTTP_JSON_BASE_URL``, ``HTTP_JSON_BEARER_TOKEN``)::

    from triggerfish.integrations.http import http_json

    api = http_json.connect()          # or http_json.connect({"base_url": "https://…"})

    @task(id="sync-invoices")
    def sync(payload: dict) -> int:
        page = api.request("list-invoices", {"path": "/invoices", "query": {"page": 1}})
        return len(page.body["data"])

A 4xx or 5xx answer raises :class:`HttpStatusError`, which fails the step
(and so is retried under the step's policy).
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from triggerfish.integrations._kit import ActionContext, Integration


class HttpJsonConfig(BaseModel):
    base_url: str
    bearer_token: str | None = None
    timeout: float = 10.0


class Request(BaseModel):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str = Field(min_length=1)
    query: dict[str, str | int | float | bool] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")

    model_config = {"populate_by_name": True}


class Response(BaseModel):
    status: int
    #: the answer's JSON (None for an empty body)
    body: Any = None


class HttpStatusError(Exception):
    """The service answered with an error status."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        self.status = status
        super().__init__(f"{method} {url} answered {status}: {body[:300]}")


def _client(config: HttpJsonConfig) -> httpx.Client:
    headers = {"Authorization": f"Bearer {config.bearer_token}"} if config.bearer_token else {}
    return httpx.Client(base_url=config.base_url, headers=headers, timeout=config.timeout)


http_json: Integration[HttpJsonConfig] = Integration(
    "http-json", config=HttpJsonConfig, name="HTTP", icon="http", http=_client
)


@http_json.action("request", input=Request, output=Response, name="request")
def request(input: Request, ctx: ActionContext[HttpJsonConfig]) -> Response:
    answer = ctx.http.request(
        input.method, input.path, params=input.query or None, json=input.json_body
    )
    if answer.is_error:
        raise HttpStatusError(input.method, str(answer.url), answer.status_code, answer.text)
    body = answer.json() if answer.content else None
    return Response(status=answer.status_code, body=body)
