"""The project configuration (``[tool.triggerfish]`` or ``triggerfish.toml``): what
it holds, its errors, and precedence: trigger option > decorator > config > default."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from triggerfish._domain.retry import RetryPolicy
from triggerfish.engine import Engine
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.sdk import _logger
from triggerfish.worker.discovery import DiscoveryError, ProjectConfig, load_registry

_FOLDERS = itertools.count()

TASKS = """
from triggerfish import retry, task

@task(id="{prefix}-plain")
def plain(payload: dict) -> None:
    return None

@task(id="{prefix}-own", machine="large-1x", max_duration=60, retry=retry(max_attempts=9))
def own(payload: dict) -> None:
    return None
"""

FULL = """
dirs = ["{folder}"]
machine = "medium-1x"
max_duration = "10m"
log_level = "warning"
environment_concurrency = 7

[retry]
max_attempts = 5
min_delay = 0.5
"""


def _project(tmp_path: Path, config: str, *, in_pyproject: bool) -> tuple[Path, str]:
    folder = f"cfg_tasks_{next(_FOLDERS)}"  # a module name of its own per test
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "jobs.py").write_text(TASKS.format(prefix=folder))
    text = config.format(folder=folder)
    if in_pyproject:
        body = text.replace("[retry]", "[tool.triggerfish.retry]")
        head, _, tail = body.partition("[tool.triggerfish.retry]")
        pyproject = f"[project]\nname = 'x'\n\n[tool.triggerfish]\n{head}"
        if tail:
            pyproject += f"\n[tool.triggerfish.retry]{tail}"
        (tmp_path / "pyproject.toml").write_text(pyproject)
    else:
        (tmp_path / "triggerfish.toml").write_text(text)
    return tmp_path, folder


@pytest.mark.parametrize("in_pyproject", [True, False])
def test_the_configuration_fills_what_decorators_leave_out(
    tmp_path: Path, in_pyproject: bool
) -> None:
    root, folder = _project(tmp_path, FULL, in_pyproject=in_pyproject)
    config = ProjectConfig.load(root)
    assert config.dirs == [folder] and config.log_level == "WARN"
    assert config.environment_concurrency == 7 and config.max_duration == 600
    assert config.retry == RetryPolicy(max_attempts=5, min_delay=0.5)
    tasks = {t.id: t.manifest() for t in load_registry(config)}
    plain, own = tasks[f"{folder}-plain"], tasks[f"{folder}-own"]
    assert (plain["machine"], plain["max_duration"], plain["retry"]["max_attempts"]) == (
        "medium-1x",
        600,
        5,
    )
    assert (own["machine"], own["max_duration"], own["retry"]["max_attempts"]) == (
        "large-1x",
        60,
        9,
    )


def test_without_configuration_the_built_in_defaults_apply(tmp_path: Path) -> None:
    root, folder = _project(tmp_path, 'dirs = ["{folder}"]', in_pyproject=False)
    config = ProjectConfig.load(root)
    plain = next(t for t in load_registry(config) if t.id == f"{folder}-plain").manifest()
    assert plain["machine"] == "small-1x" and plain["max_duration"] is None
    assert plain["retry"] == RetryPolicy().to_json()
    assert config.log_level == "INFO" and config.environment_concurrency is None


def test_two_configurations_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.triggerfish]\ndirs = ['a']\n")
    (tmp_path / "triggerfish.toml").write_text("dirs = ['b']\n")
    with pytest.raises(DiscoveryError, match="two project configurations"):
        ProjectConfig.load(tmp_path)
    # a pyproject without the section is no configuration
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert ProjectConfig.load(tmp_path).dirs == ["b"]


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("dirz = ['a']", "unknown setting 'dirz'"),
        ("machine = 'huge-99x'", "machine"),
        ("max_duration = 0", "max_duration"),
        ("log_level = 'LOUD'", "log_level"),
        ("environment_concurrency = -1", "environment_concurrency"),
        ("[retry]\nmax_attempts = 0", "max_attempts"),
        ("[retry]\ntries = 3", "retry is a table"),
    ],
)
def test_a_bad_setting_is_named(tmp_path: Path, setting: str, says: str) -> None:
    (tmp_path / "triggerfish.toml").write_text(setting + "\n")
    with pytest.raises(DiscoveryError, match=says):
        ProjectConfig.load(tmp_path)


def test_log_level_drops_lower_lines() -> None:
    lines: list[dict[str, object]] = []
    _logger.set_sink(lines.append)
    _logger.set_level("WARN")
    try:
        _logger.logger.info("dropped")
        _logger.logger.warn("kept")
    finally:
        _logger.set_level("DEBUG")
        _logger.set_sink(None)
    assert [line["message"] for line in lines] == ["kept"]


async def test_a_trigger_option_wins_over_the_configured_machine(engine: Engine) -> None:
    env = await engine.environments.by_slug("dev")
    manifest = {
        "id": "t",
        "retry": {},
        "machine": "medium-1x",  # the configuration's default, in the manifest
        "queue": {"name": "task/t"},
    }
    await engine.workers.register(env.id, version="v1", name="w", concurrency=1, tasks=[manifest])
    plain = await engine.enqueue.trigger(env.id, TriggerRequest("t", {}))
    chosen = await engine.enqueue.trigger(env.id, TriggerRequest("t", {}, machine="large-2x"))
    machines = [(await engine.runs.retrieve(env.id, r.id)).run.machine for r in (plain, chosen)]
    assert machines == ["medium-1x", "large-2x"]


async def test_the_configured_environment_limit_yields_to_a_run_time_one(engine: Engine) -> None:
    env = await engine.environments.by_slug("dev")

    async def register(limit: int | None) -> None:
        await engine.workers.register(
            env.id,
            version="v1",
            name="w",
            concurrency=1,
            tasks=[],
            environment={"concurrency_limit": limit},
        )

    async def limit() -> int | None:
        return (await engine.queues.environment_limit(env.id))[0]

    await register(3)
    assert await limit() == 3
    await engine.queues.set_environment_limit(env.id, 5)
    await register(2)  # a new deploy's default does not undo the run-time limit
    assert await limit() == 5
    await engine.queues.reset_environment_limit(env.id)
    assert await limit() == 2
    await register(None)
    assert await limit() is None
    await engine.workers.register(env.id, version="v1", name="old", concurrency=1, tasks=[])
    await register(4)
    await engine.workers.register(env.id, version="v1", name="old", concurrency=1, tasks=[])
    assert await limit() == 4  # a worker that declares nothing leaves it as it is
