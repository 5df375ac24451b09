"""The front-end files ship in the package: /docs and the dashboard load nothing from a CDN."""

from __future__ import annotations

import re

import httpx

from triggerfish.api.app import create_app
from triggerfish.engine import Engine


async def test_docs_page_loads_swagger_ui_from_the_server(engine: Engine) -> None:
    app = create_app(engine, manage_engine=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        sources = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assert sources, page.text
        for url in sources:
            assert url.startswith("/"), f"/docs loads {url} from elsewhere"
            asset = await http.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 100, url
        htmx = await http.get("/static/vendor/htmx.min.js")
        assert htmx.status_code == 200
        assert b"htmx" in htmx.content[:2000]
