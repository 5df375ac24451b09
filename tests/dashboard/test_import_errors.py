"""A task file that fails to import shows on the home and Tasks pages until it is fixed."""

from __future__ import annotations

import httpx

from tests.api.conftest import MANIFEST
from triggerfish.api.app import create_app
from triggerfish.engine import Engine

LINES = [
    '  File "/proj/jobs/broken.py", line 3',
    "    def oops(:",
    "             ^",
    "SyntaxError: invalid syntax",
]


async def test_import_errors_show_until_a_newer_worker_imports_the_file(engine: Engine) -> None:
    key, _ = await engine.environments.create_key("dev", "test")
    app = create_app(engine, manage_engine=False, dashboard_dev=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://dashboard.test", follow_redirects=True
    ) as http:

        async def register(import_errors: list[dict[str, object]]) -> None:
            body = {"version": "v1", "name": "w", "concurrency": 1, "tasks": [MANIFEST]}
            answer = await http.post(
                "/worker/v1/register",
                json={**body, "import_errors": import_errors},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert answer.status_code == 200, answer.text

        home = await http.get("/")
        assert "failed to import" not in home.text
        await register(
            [{"file": "jobs/broken.py", "error": "SyntaxError('invalid syntax')", "lines": LINES}]
        )
        for path in ("/", "/tasks"):
            page = await http.get(path)
            assert page.status_code == 200
            assert "Task files that failed to import" in page.text, path
            assert "<code>jobs/broken.py</code>" in page.text, path
            assert "SyntaxError: invalid syntax" in page.text, path
            assert "    def oops(:" in page.text, path  # the error's last lines, as they were
        home = await http.get("/")
        assert "Task file jobs/broken.py failed to import" in home.text  # among the findings

        # the file is fixed: dev starts a worker on the new code, which imports it
        await register([])
        for path in ("/", "/tasks"):
            page = await http.get(path)
            assert "failed to import" not in page.text, path
            assert "jobs/broken.py" not in page.text, path


async def test_a_bad_import_error_report_is_refused(engine: Engine) -> None:
    key, _ = await engine.environments.create_key("dev", "test")
    app = create_app(engine, manage_engine=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        body = {"version": "v1", "name": "w", "concurrency": 1, "tasks": [MANIFEST]}
        answer = await http.post(
            "/worker/v1/register",
            json={**body, "import_errors": [{"error": "no file"}]},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert answer.status_code == 422
        assert "file" in answer.text
