"""The environment variables page: the selected environment's variables with their
values masked, set (create or replace) and delete, CSRF like every form."""

from __future__ import annotations

import re

import httpx

from triggerfish.api.app import create_app
from triggerfish.engine import Engine


def _csrf(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def test_list_set_and_delete_variables_of_the_selected_environment(
    engine: Engine,
) -> None:
    dev = await engine.environments.by_slug("dev")
    prod = await engine.environments.by_slug("prod")
    await engine.envvars.create(dev.id, "API_URL", "https://api.example.com")
    await engine.envvars.create(dev.id, "CALLBACK_SECRET", "s3cr3t-value", secret=True)
    await engine.envvars.create(prod.id, "ONLY_IN_PROD", "p")

    app = create_app(engine, manage_engine=False, dashboard_dev=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://dashboard.test",
        follow_redirects=True,
    ) as http:
        listing = await http.get("/envvars")
        assert listing.status_code == 200
        assert 'href="/envvars" aria-current="page"' in listing.text  # in the nav
        assert 'data-var="API_URL"' in listing.text and 'data-var="CALLBACK_SECRET"' in listing.text
        assert "ONLY_IN_PROD" not in listing.text  # another environment's
        assert "s3cr3t-value" not in listing.text  # a secret never reaches the browser
        # a plain value is masked until shown (inside a closed <details>)
        assert re.search(r"<details class=\"reveal\">.*https://api\.example\.com", listing.text)
        csrf = _csrf(listing.text)

        # set: creates, then replaces; the engine seals it and attempts get it
        made = await http.post(
            "/envvars", data={"csrf": csrf, "name": "REGION", "value": "eu", "secret": "on"}
        )
        assert "REGION set in dev" in made.text
        replaced = await http.post(
            "/envvars", data={"csrf": csrf, "name": "REGION", "value": "us", "secret": "on"}
        )
        assert "REGION set in dev" in replaced.text and ">us<" not in replaced.text
        assert (await engine.envvars.get(dev.id, "dev", "REGION")).value == "us"
        assert (await engine.envvars.for_attempts(dev.id))["REGION"] == "us"

        # the engine's checks answer as a notice naming the field
        reserved = await http.post(
            "/envvars", data={"csrf": csrf, "name": "TRIGGERFISH_SECRET_KEY", "value": "x"}
        )
        assert "name: &#39;TRIGGERFISH_SECRET_KEY&#39; is reserved" in reserved.text
        bad_name = await http.post("/envvars", data={"csrf": csrf, "name": "1BAD", "value": "x"})
        assert "is not a valid variable name" in bad_name.text

        # without the page's CSRF token nothing changes
        forged = await http.post("/envvars", data={"name": "EVIL", "value": "1"})
        assert forged.status_code == 403
        forged_delete = await http.post("/envvars/API_URL/delete", data={"csrf": "nope"})
        assert forged_delete.status_code == 403
        assert {v.name for v in await engine.envvars.all(dev.id)} == {
            "API_URL",
            "CALLBACK_SECRET",
            "REGION",
        }

        deleted = await http.post("/envvars/API_URL/delete", data={"csrf": csrf})
        assert "API_URL deleted from dev" in deleted.text
        assert 'data-var="API_URL"' not in deleted.text
        missing = await http.post("/envvars/API_URL/delete", data={"csrf": csrf})
        assert "API_URL" in missing.text and "flash bad" in missing.text

        # the environment switcher changes which variables the page shows and sets
        switched = await http.post(
            "/environment", data={"csrf": csrf, "env": "prod", "next": "/envvars"}
        )
        assert 'data-var="ONLY_IN_PROD"' in switched.text
        assert 'data-var="REGION"' not in switched.text
        await http.post("/envvars", data={"csrf": csrf, "name": "REGION", "value": "ap"})
        assert (await engine.envvars.get(prod.id, "prod", "REGION")).value == "ap"
        assert (await engine.envvars.get(dev.id, "dev", "REGION")).value == "us"
