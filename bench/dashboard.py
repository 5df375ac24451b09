"""Dashboard page speed with many runs: first byte and DOMContentLoaded per page.

Fills a store with ``--runs`` finished runs (default 100,000, copies of one
real run, straight in SQL as W5 does), signs a dashboard user in, then for
each page measures ``--samples`` times:

- **first byte**: from sending the request (signed-in cookie, kept-alive
  connection) to the first byte of the answer, with httpx;
- **DOMContentLoaded**: in headless Chromium (``/usr/bin/chromium``, Playwright),
  the navigation timing's ``domContentLoadedEventEnd``; on the runs list and a
  run's page the live feed (``/live``) connects from that event, and the
  sample is taken once its stream is open.

Targets (issue 18): first byte p95 < 150 ms, DOMContentLoaded p95 < 300 ms.

    .venv/bin/python -m bench.dashboard [--backend postgresql] [--runs 100000] [--samples 30]

Writes ``bench/RESULTS-dashboard.md`` (``--no-write`` to keep it).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import time
from pathlib import Path

import httpx

from bench._bulk import fill_runs
from bench._common import BenchError, clean_env, percentile, wait_until
from bench._triggerfish import TRIGGERFISH, triggerfish_stack

USER, PASSWORD = "bench", "bench password 123"
TARGET_FIRST_BYTE_P95 = 150.0
TARGET_DCL_P95 = 300.0
RESULTS = Path(__file__).with_name("RESULTS-dashboard.md")


def _pages(run_id: str) -> list[str]:
    return [
        "/",
        "/runs",
        "/runs?status=COMPLETED",
        "/runs?task=noop",
        f"/runs/{run_id}",
        "/tasks",
        "/schedules",
        "/queues",
        "/tokens",
        "/events",
        "/workers",
        "/keys",
    ]


def _sign_in(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    form = client.get("/login")
    found = re.search(r'name="csrf" value="([^"]+)"', form.text)
    if found is None:
        raise BenchError("no sign-in form")
    answer = client.post(
        "/login", data={"csrf": found.group(1), "username": USER, "password": PASSWORD}
    )
    if answer.status_code != 303:
        raise BenchError(f"sign-in refused: {answer.status_code}")
    return client


def first_byte(client: httpx.Client, path: str, samples: int) -> list[float]:
    client.get(path)  # warm: templates compiled, connection open
    out = []
    for _ in range(samples):
        began = time.perf_counter()
        with client.stream("GET", path) as answer:
            chunks = answer.iter_raw()
            next(chunks)
            out.append((time.perf_counter() - began) * 1000)
            if answer.status_code != 200:
                raise BenchError(f"{path}: {answer.status_code}")
            for _rest in chunks:
                pass
    return out


def dom_content_loaded(url: str, cookies: dict[str, str], path: str, samples: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu"],
        )
        context = browser.new_context(base_url=url)
        context.add_cookies([{"name": k, "value": v, "url": url} for k, v in cookies.items()])
        page = context.new_page()
        page.goto(path)
        live = page.locator("[data-live]").count() > 0
        for _ in range(samples):
            if live:  # the sample counts once the live feed's stream has answered
                with page.expect_response(lambda r: "/live" in r.url, timeout=10_000):
                    page.goto(path, wait_until="domcontentloaded")
            else:
                page.goto(path, wait_until="domcontentloaded")
            out.append(
                page.evaluate(
                    "performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"
                )
            )
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="postgresql", choices=["postgresql", "sqlite"])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    with triggerfish_stack(args.backend, workers=1) as stack:
        made = subprocess.run(
            [*TRIGGERFISH, "users", "create", USER, "--password-stdin"],
            input=PASSWORD + "\n",
            env=clean_env({"DATABASE_URL": stack.db_url}),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if made.returncode:
            raise BenchError(made.stdout + made.stderr)
        headers = {"Authorization": f"Bearer {stack.key}"}
        answer = httpx.post(
            stack.api_url + "/api/v1/tasks/noop/trigger", json={"payload": {}}, headers=headers
        )
        run_id = answer.json()["id"]
        wait_until(
            lambda: (
                httpx.get(f"{stack.api_url}/api/v3/runs/{run_id}", headers=headers).json()["status"]
                == "COMPLETED"
            ),
            60,
            "the template run",
        )
        seconds = fill_runs(stack.db_url, run_id, args.runs)
        print(f"filled {args.runs} runs in {seconds:.1f} s")
        client = _sign_in(stack.api_url)
        cookies = dict(client.cookies.items())
        rows = []
        for path in _pages(run_id):
            ttfb = first_byte(client, path, args.samples)
            dcl = dom_content_loaded(stack.api_url, cookies, path, args.samples)
            row = (
                path,
                percentile(ttfb, 50),
                percentile(ttfb, 95),
                percentile(dcl, 50),
                percentile(dcl, 95),
            )
            rows.append(row)
            print("{:<28} first byte p50 {:6.1f} p95 {:6.1f} ms".format(*row[:3]), end="   ")
            print("DCL p50 {:6.1f} p95 {:6.1f} ms".format(*row[3:]))
        client.close()

    worst_ttfb = max(r[2] for r in rows)
    worst_dcl = max(r[4] for r in rows)
    verdict = (
        f"worst first byte p95 {worst_ttfb:.1f} ms (target < {TARGET_FIRST_BYTE_P95:.0f}): "
        f"{'met' if worst_ttfb < TARGET_FIRST_BYTE_P95 else 'NOT met'}; worst DOMContentLoaded "
        f"p95 {worst_dcl:.1f} ms (target < {TARGET_DCL_P95:.0f}): "
        f"{'met' if worst_dcl < TARGET_DCL_P95 else 'NOT met'}"
    )
    print(verdict)
    if args.no_write:
        return
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    lines = [
        "# Dashboard page speed",
        "",
        f"`python -m bench.dashboard --backend {args.backend} --runs {args.runs} "
        f"--samples {args.samples}` on {platform.node()} ({platform.machine()}, "
        f"Python {platform.python_version()}), {when} UTC.",
        "",
        "| page | first byte p50 (ms) | p95 | DOMContentLoaded p50 (ms) | p95 |",
        "|---|---|---|---|---|",
        *(f"| `{p}` | {a:.1f} | {b:.1f} | {c:.1f} | {d:.1f} |" for p, a, b, c, d in rows),
        "",
        verdict,
        "",
        f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
        "(figures taken on a busy machine overstate the pages' own cost).",
        "",
    ]
    RESULTS.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
