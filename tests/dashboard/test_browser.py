"""The dashboard in headless Chromium: sign in, trigger, watch, act (see conftest.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests import support
from tests.dashboard.conftest import (
    DESKTOP,
    Dashboard,
    Watch,
    require_axe,
    screenshot,
    sign_in,
    watch,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]


def _run_status(dashboard: Dashboard, run_id: str) -> str:
    return str(dashboard.api("GET", f"/api/v3/runs/{run_id}").json()["status"])


def _trigger(dashboard: Dashboard, task: str, payload: Any, **options: Any) -> str:
    answer = dashboard.api(
        "POST", f"/api/v1/tasks/{task}/trigger", json={"payload": payload, "options": options}
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def test_sign_in_refuses_a_wrong_password_then_signs_in(browser: Any, dashboard: Dashboard) -> None:
    context = browser.new_context(base_url=dashboard.url, viewport=DESKTOP)
    page = context.new_page()
    found = Watch()
    watch(context, page, found)
    page.goto("/runs")
    assert "/login" in page.url
    screenshot(page, "login")
    # the wrong password answers 401, which the browser logs; that one is expected
    sign_in(page, password="not the password")
    assert page.locator(".flash.bad").inner_text() == "Wrong user name or password."
    found.problems = [p for p in found.problems if "401" not in p]
    sign_in(page)
    page.wait_for_url(dashboard.url + "/")
    assert page.locator("h1").inner_text() == "dev environment"
    # the cookie is the dashboard's alone: the API still wants a bearer key
    assert page.request.get("/api/v1/runs").status == 401
    context.close()
    assert not found.problems, found.problems


def test_test_form_triggers_and_the_row_turns_completed_live(
    page: Any, dashboard: Dashboard
) -> None:
    page.goto("/tasks")
    screenshot(page, "tasks")
    page.click("a[href='/tasks/greet/test']")
    prefilled = json.loads(page.input_value("#payload"))
    assert prefilled == {"name": "Ada", "times": 1}  # from the payload model's JSON Schema
    screenshot(page, "task-test")
    # invalid JSON is caught in the page, nothing is sent
    page.fill("#payload", "{not json")
    page.click("button.primary")
    assert page.locator("#payload-error").is_visible()
    assert "/tasks/greet/test" in page.url
    page.fill("#payload", json.dumps({"name": "Grace", "times": 2}))
    page.click("button.primary")
    page.wait_for_url(re.compile(r"/runs\?task=greet"))
    run_id = re.search(r"started (run_\w+)", page.locator(".flash.ok").inner_text())
    assert run_id is not None
    row = page.locator(f"#row-{run_id.group(1)}")
    page.evaluate("window.__noReload = true")
    row.locator(".badge-completed").wait_for(timeout=30_000)
    assert page.evaluate("window.__noReload") is True  # updated in place, not reloaded
    screenshot(page, "runs")

    row.locator("a").click()
    page.wait_for_url(re.compile(r"/runs/run_"))
    assert "Hello Grace Hello Grace" in page.locator("#output-json").inner_text()
    assert "greeting someone" in page.locator(".log-lines").inner_text()
    page.select_option("[data-log-level]", "WARN")
    assert page.locator(".log-lines li[data-level=INFO]").first.is_hidden()
    assert page.locator(".trace-row[data-kind=attempt]").count() == 1
    screenshot(page, "run")


def test_replay_a_failed_run_from_a_step(page: Any, dashboard: Dashboard) -> None:
    run_id = _trigger(dashboard, "two-steps", {"fail": True})
    support.wait_for(lambda: _run_status(dashboard, run_id) == "FAILED", 30, what="run to fail")
    page.goto(f"/runs/{run_id}")
    assert "the second step failed on purpose" in page.locator(".error-box").first.inner_text()
    bars = page.locator(".trace-row")
    assert bars.count() >= 2  # the attempt and the steps
    page.click("details:has(#from-step) summary")
    page.select_option("#from-step", "2")
    page.fill("#replay-payload", json.dumps({"fail": False}))
    page.locator("details form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/runs/run_\w+\?notice=replay"))
    new_id = page.url.split("/runs/")[1].split("?")[0]
    assert new_id != run_id
    page.locator(".run-head .badge-completed").wait_for(timeout=30_000)
    assert '"sum": 3' in page.locator("#output-json").inner_text()
    # step 1 was copied, not rerun: its bar is in the new run's trace
    assert page.locator(".trace-row", has_text="1. first").count() == 1
    screenshot(page, "run-steps")


def _percent(style: str, prop: str) -> float:
    found = re.search(rf"{prop}:\s*([\d.]+)%", style)
    assert found is not None, style
    return float(found.group(1))


def test_the_trace_draws_attempts_steps_with_tries_waits_and_a_linked_child(
    page: Any, dashboard: Dashboard
) -> None:
    """The waterfall reads the run's trace (the one GET /api/v1/runs/{id}/trace serves)."""
    run_id = _trigger(dashboard, "traced", {"wait": 1})
    support.wait_for(lambda: _run_status(dashboard, run_id) == "COMPLETED", 60, what="the run")
    spans = dashboard.api("GET", f"/api/v1/runs/{run_id}/trace").json()["spans"]
    page.goto(f"/runs/{run_id}")
    rows = page.locator(".trace-row")
    # one row per span of the API's trace, in the same tree
    assert rows.count() == len(spans), [s["name"] for s in spans]
    assert page.locator(".trace-row[data-kind=run][data-depth='0']").count() == 1
    # the durable wait ends the first attempt; the run goes on in another
    attempts = page.locator(".trace-row[data-kind=attempt][data-depth='1']")
    assert attempts.count() >= 1
    attempt = attempts.first
    assert page.locator(".trace-row[data-kind=step][data-depth='2']").count() == 1
    step = page.locator(".trace-row[data-kind=step]", has_text="1. flaky")
    assert step.get_attribute("data-tries") == "2"
    assert "(2 tries)" in step.inner_text()
    waited = page.locator(".trace-row[data-kind=wait]")
    assert "waits for a duration, until 20" in waited.inner_text()  # and when it ends
    child = page.locator(".trace-row[data-kind=child]")
    child_link = child.locator("a[href^='/runs/run_']")
    assert child_link.count() == 1
    assert "completed" in child.inner_text()
    # positioned bars: each starts where the run's time says, in order, with a width
    lefts = []
    for row in (attempt, step, waited, child):
        bar = row.locator(".trace-bar")
        style = bar.get_attribute("style") or ""
        lefts.append(_percent(style, "margin-left"))
        assert _percent(style, "width") > 0
        box = bar.bounding_box()
        assert box is not None and box["width"] > 0
    assert lefts[0] <= lefts[1] < lefts[2] < lefts[3], lefts
    wait_bar = _percent(waited.locator(".trace-bar").get_attribute("style") or "", "width")
    assert wait_bar > 5  # a second of the run's few seconds
    screenshot(page, "run-trace")
    child_link.click()
    page.wait_for_url(re.compile(r"/runs/run_"))
    assert page.locator(".run-head .badge-completed").count() == 1
    assert page.locator(".run-head .task").inner_text() == "greet"


def _wait_for_text(page: Any, selector: str, value: int) -> None:
    """Until the element ``selector`` finds (a live swap replaces it) reads ``value``."""
    page.wait_for_function(
        "([sel, n]) => { const el = document.querySelector(sel);"
        " return el !== null && el.textContent.trim() === String(n); }",
        arg=[selector, value],
    )


@pytest.mark.timeout(180)
def test_queue_counts_update_live_without_reload_or_layout_shift(
    page: Any, dashboard: Dashboard
) -> None:
    paused = dashboard.api("POST", "/api/v1/queues/task/ticker/pause", json={"action": "pause"})
    assert paused.status_code == 200, paused.text
    try:
        page.goto("/queues")
        queued = page.locator("tr[data-queue='task/ticker'] [data-count=queued]")
        before = int(queued.inner_text())
        page.evaluate(
            """() => {
              window.__noReload = true; window.__cls = 0;
              new PerformanceObserver(list => {
                for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value;
              }).observe({type: "layout-shift", buffered: true});
            }"""
        )
        page.fill("tr[data-queue='task/ticker'] input[name=limit]", "7")  # being typed
        for n in range(1, 3):
            _trigger(dashboard, "ticker", {"lines": 1, "every": 0})
            _wait_for_text(page, "tr[data-queue='task/ticker'] [data-count=queued]", before + n)
        assert page.evaluate("window.__noReload") is True  # updated in place
        assert page.input_value("tr[data-queue='task/ticker'] input[name=limit]") == "7"
        shift = page.evaluate("window.__cls")
        assert shift < 0.1, shift

        page.goto("/")  # the home page follows the same feed
        waiting = page.locator("#home-live [data-count=waiting]")
        at_first = int(waiting.inner_text())
        page.evaluate("window.__noReload = true")
        _trigger(dashboard, "ticker", {"lines": 1, "every": 0})
        _wait_for_text(
            page, "#home-live tr[data-queue='task/ticker'] [data-count=queued]", before + 3
        )
        assert int(waiting.inner_text()) == at_first + 1
        assert page.evaluate("window.__noReload") is True
        screenshot(page, "home-live")
    finally:
        dashboard.api("POST", "/api/v1/queues/task/ticker/pause", json={"action": "resume"})
    support.wait_for(  # the runs it queued are done before the next test
        lambda: dashboard.api("GET", "/api/v1/queues/task/ticker").json()["queued"] == 0,
        30,
        what="the ticker queue to drain",
    )


def test_cancel_a_delayed_run(page: Any, dashboard: Dashboard) -> None:
    run_id = _trigger(dashboard, "greet", {}, delay="1h")
    page.goto(f"/runs/{run_id}")
    assert "Delayed until" in page.locator(".run-head").inner_text()
    page.click("button.danger")
    page.locator(".run-head .badge-canceled").wait_for()
    assert _run_status(dashboard, run_id) == "CANCELED"


def test_complete_a_waiting_token_and_the_run_finishes(page: Any, dashboard: Dashboard) -> None:
    run_id = _trigger(dashboard, "awaits-approval", {})
    support.wait_for(lambda: _run_status(dashboard, run_id) == "WAITING", 30, what="the wait")
    page.goto("/tokens")
    screenshot(page, "tokens")
    page.goto(f"/runs/{run_id}")
    page.fill(".waiting textarea", json.dumps({"by": "ada"}))
    page.click(".waiting button")
    page.locator(".run-head .badge-completed").wait_for(timeout=30_000)
    assert '"by": "ada"' in page.locator("#output-json").inner_text()


def test_pause_a_queue_and_see_the_reason_on_a_queued_run(page: Any, dashboard: Dashboard) -> None:
    page.goto("/queues")
    row = page.locator("tr[data-queue='task/greet']")
    row.locator("button[value=pause]").click()
    page.wait_for_url(re.compile(r"notice="))
    assert row.locator(".badge-paused").count() == 1
    screenshot(page, "queues")
    run_id = _trigger(dashboard, "greet", {})
    try:
        page.goto(f"/runs/{run_id}")
        assert "paused" in page.locator(".run-head .reason").inner_text()
        page.goto("/")
        assert "task/greet is paused" in page.locator(".findings").inner_text()
        screenshot(page, "home")
    finally:
        page.goto("/queues")
        page.locator("tr[data-queue='task/greet'] button[value=resume]").click()
        page.wait_for_url(re.compile(r"notice="))
    support.wait_for(lambda: _run_status(dashboard, run_id) == "COMPLETED", 30, what="the run")


def test_create_and_deactivate_a_schedule(page: Any, dashboard: Dashboard) -> None:
    page.goto("/schedules")
    page.select_option("#s-task", "tick")
    page.fill("#s-cron", "0 9 * * 1-5")
    page.fill("#s-tz", "Europe/Paris")
    page.click("#edit button.primary")
    page.wait_for_url(re.compile(r"notice=created"))
    row = page.locator("tbody tr", has_text="tick").first
    assert row.locator("li", has_text="CE").count() == 5  # five slots in Paris time
    row.locator("button", has_text="Deactivate").click()
    page.wait_for_url(re.compile(r"notice="))
    assert page.locator("tbody tr", has_text="tick").first.locator(".badge-paused").count() == 1
    screenshot(page, "schedules")


def test_create_a_key_then_revoke_it_and_the_api_refuses_it(
    page: Any, dashboard: Dashboard
) -> None:
    page.goto("/keys")
    page.fill("#key-name", "from-the-browser")
    page.click("form.inline-form button.primary")
    key = page.locator("#new-key").inner_text().strip()
    assert key.startswith("tr_dev_")
    whoami = {"Authorization": f"Bearer {key}"}
    import httpx

    assert httpx.get(dashboard.url + "/api/v2/whoami", headers=whoami).status_code == 200
    page.goto("/keys")
    screenshot(page, "keys")
    row = page.locator("tr", has_text="from-the-browser")
    row.locator("button.danger").click()
    page.wait_for_url(re.compile(r"notice=revoked"))
    support.wait_for(
        lambda: httpx.get(dashboard.url + "/api/v2/whoami", headers=whoami).status_code == 401,
        15,
        what="the revoked key to be refused",
    )


def test_other_pages_the_dark_theme_and_the_environment_switcher(
    page: Any, dashboard: Dashboard
) -> None:
    dashboard.api("PUT", "/api/v1/envvars/API_URL", json={"value": "https://api.example.com"})
    dashboard.api("PUT", "/api/v1/envvars/CALLBACK_SECRET", json={"value": "s", "isSecret": True})
    pages = [("/workers", "workers"), ("/events", "events"), ("/envvars", "envvars")]
    pages += [("/runs-bulk?action=cancel", "runs-bulk")]
    for path, name in pages:
        page.goto(path)
        assert page.locator("h1").count() == 1
        screenshot(page, name)
    page.click("[data-theme-toggle]")
    theme = page.evaluate("document.documentElement.dataset.theme")
    assert theme in ("dark", "light")
    if theme == "light":
        page.click("[data-theme-toggle]")
    page.goto("/runs")  # the choice is kept across pages
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    screenshot(page, "runs-dark")
    with page.expect_navigation():
        page.select_option("#env-select", "prod")
    assert page.locator("#env-select").input_value() == "prod"
    assert page.locator("#run-rows").inner_text().strip() == "No runs match."
    with page.expect_navigation():
        page.select_option("#env-select", "dev")
    assert page.locator("#env-select").input_value() == "dev"
    page.goto("/events")
    page.fill("#ev-name", "order.paid")
    page.click("form.stack button.primary")
    page.wait_for_url(re.compile(r"notice=sent"))
    assert page.locator("tbody tr", has_text="order.paid").count() == 1


#: every page the dashboard has, scanned by axe-core
PAGES = ["/", "/runs", "/tasks", "/tasks/greet/test", "/schedules", "/queues", "/tokens"]
PAGES += ["/events", "/webhook-endpoints", "/alerts", "/envvars", "/workers", "/keys"]
PAGES += ["/runs-bulk?action=cancel&status=QUEUED"]


@pytest.mark.timeout(180)  # fourteen pages, each scanned twice
def test_axe_finds_no_serious_accessibility_problem(page: Any, dashboard: Dashboard) -> None:
    """Each page in the light theme and then the dark one (the theme is an attribute)."""
    run_id = _trigger(dashboard, "greet", {})
    support.wait_for(lambda: _run_status(dashboard, run_id) == "COMPLETED", 30, what="the run")
    axe = require_axe()
    problems = []
    for path in [*PAGES, f"/runs/{run_id}"]:
        page.goto(path)
        page.add_script_tag(path=str(axe))
        for theme in ("light", "dark"):
            page.evaluate(f"document.documentElement.dataset.theme = '{theme}'")
            result = page.evaluate(
                """async () => {
                  const r = await axe.run(document, {
                    runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
                  });
                  return {
                    passes: r.passes.length,
                    serious: r.violations
                      .filter(v => v.impact === "serious" || v.impact === "critical")
                      .map(v => v.id + ": " +
                           v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(", ")),
                  };
                }"""
            )
            assert result["passes"] > 5, result  # it did look at the page
            problems += [f"{path} ({theme}): {p}" for p in result["serious"]]
    assert not problems, "\n".join(problems)


def test_live_updates_of_a_run_page_do_not_shift_the_layout(
    page: Any, dashboard: Dashboard
) -> None:
    run_id = _trigger(dashboard, "ticker", {"lines": 20, "every": 0.2})
    page.goto(f"/runs/{run_id}")
    page.evaluate(
        """() => {
          window.__cls = 0; window.__swaps = 0;
          new PerformanceObserver(list => {
            for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value;
          }).observe({type: "layout-shift", buffered: true});
          document.body.addEventListener("htmx:afterSwap", () => window.__swaps++);
        }"""
    )
    page.locator(".run-head .badge-completed").wait_for(timeout=30_000)
    page.locator(".log-lines li[data-level]").nth(19).wait_for(state="attached")
    swaps, shift = page.evaluate("[window.__swaps, window.__cls]")
    print(f"live updates: {swaps} swaps, cumulative layout shift {shift:.4f}")
    assert swaps >= 4, swaps  # the page followed the run as it logged
    assert shift < 0.1, (shift, swaps)
