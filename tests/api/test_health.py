"""``/healthz`` (the process) and ``/readyz`` (the store) for load balancers (issue 17)."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import Served
from triggerfish.engine import Engine
from triggerfish.errors import StoreUnavailable


async def test_healthz_answers_while_readyz_follows_the_store(
    served: Served, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with httpx.AsyncClient(base_url=served.url) as anonymous:  # no key needed
        assert (await anonymous.get("/healthz")).json() == {"ok": True}
        assert (await anonymous.get("/readyz")).json() == {"ok": True}

        async def away() -> None:
            raise StoreUnavailable("the database connection failed (ConnectionRefusedError)")

        monkeypatch.setattr(engine.res.db, "ping", away)
        assert (await anonymous.get("/healthz")).status_code == 200
        r = await anonymous.get("/readyz")
        assert r.status_code == 503 and r.headers["x-should-retry"] == "true"
