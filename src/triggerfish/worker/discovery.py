"""Find a project's task modules, import them into a registry, and fingerprint them."""

from __future__ import annotations

import hashlib
import importlib
import sys
import tomllib
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triggerfish._domain.machines import check_machine
from triggerfish._domain.retry import RetryPolicy
from triggerfish._durations import parse_duration
from triggerfish.errors import InvalidTaskOptions
from triggerfish.sdk._registry import TaskRegistry, collecting_into

DEFAULT_DIRS = ["tasks"]
#: the project configuration file beside (or instead of) ``[tool.triggerfish]``
CONFIG_FILE = "triggerfish.toml"
LOG_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
_KEYS = ("dirs", "retry", "machine", "max_duration", "log_level", "environment_concurrency")


class DiscoveryError(Exception):
    pass


@dataclass(frozen=True)
class ProjectConfig:
    """The project's configuration: ``[tool.triggerfish]`` of ``pyproject.toml``, or
    ``triggerfish.toml`` (top-level keys); both at once is an error.

    Every setting is optional. ``retry``, ``machine`` and ``max_duration`` are
    defaults for tasks whose decorator leaves them out (a trigger's own options
    win over both); ``log_level`` drops ``logger`` lines below it;
    ``environment_concurrency`` is the environment's concurrency limit unless
    one is set at run time (``queues env-limit``), until that is reset.
    """

    root: Path
    dirs: list[str] = field(default_factory=lambda: list(DEFAULT_DIRS))
    retry: RetryPolicy | None = None
    machine: str | None = None
    max_duration: float | None = None
    log_level: str = "INFO"
    environment_concurrency: int | None = None
    #: the file the settings came from (None: no configuration)
    source: Path | None = None
    #: serve the tasks of the files that import, skipping (and reporting) those
    #: that fail, rather than refusing to start (``triggerfish dev``)
    skip_broken: bool = False

    @classmethod
    def load(cls, root: Path, dirs: list[str] | None = None) -> ProjectConfig:
        root = root.resolve()
        section, source = _read(root)
        where = f"{source} [tool.triggerfish]" if source and source.name != CONFIG_FILE else source
        unknown = sorted(set(section) - set(_KEYS))
        if unknown:
            raise DiscoveryError(
                f"{where}: unknown setting {unknown[0]!r}; the settings are {', '.join(_KEYS)}"
            )
        configured = section.get("dirs", list(DEFAULT_DIRS))
        if not isinstance(configured, list) or not all(isinstance(d, str) for d in configured):
            raise DiscoveryError(f"{where}: dirs must be a list of folder names")
        return cls(
            root=root,
            dirs=dirs or configured,
            retry=_retry(section.get("retry"), where),
            machine=_machine(section.get("machine"), where),
            max_duration=_max_duration(section.get("max_duration"), where),
            log_level=_log_level(section.get("log_level", "INFO"), where),
            environment_concurrency=_env_limit(section.get("environment_concurrency"), where),
            source=source,
        )

    def task_files(self) -> list[Path]:
        files: list[Path] = []
        for name in self.dirs:
            folder = (self.root / name).resolve()
            if not folder.is_dir():
                raise DiscoveryError(
                    f"task folder {folder} does not exist; create it or set dirs in "
                    f"[tool.triggerfish] of pyproject.toml or in {CONFIG_FILE} (or pass --dir)"
                )
            files.extend(p for p in sorted(folder.rglob("*.py")) if "__pycache__" not in p.parts)
        return files


def _read(root: Path) -> tuple[dict[str, Any], Path | None]:
    """The configuration's settings and the file they are in."""
    found: list[tuple[dict[str, Any], Path]] = []
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        section = _toml(pyproject).get("tool", {}).get("triggerfish")
        if section is not None:
            found.append((section, pyproject))
    own = root / CONFIG_FILE
    if own.is_file():
        found.append((_toml(own), own))
    if len(found) > 1:
        raise DiscoveryError(
            f"two project configurations: [tool.triggerfish] in {pyproject} and {own}; "
            "keep one of them"
        )
    if not found:
        return {}, None
    section, source = found[0]
    if not isinstance(section, dict):
        raise DiscoveryError(f"{source}: [tool.triggerfish] must be a table")
    return section, source


def _toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise DiscoveryError(f"{path}: not valid TOML ({exc})") from None


def _retry(value: Any, where: object) -> RetryPolicy | None:
    if value is None:
        return None
    fields = ("max_attempts", "factor", "min_delay", "max_delay", "jitter")
    if not isinstance(value, dict) or set(value) - set(fields):
        raise DiscoveryError(f"{where}: retry is a table of {', '.join(fields)}")
    try:
        return RetryPolicy(**value)
    except (TypeError, ValueError) as exc:
        raise DiscoveryError(f"{where}: {exc}") from None


def _machine(value: Any, where: object) -> str | None:
    if value is None:
        return None
    try:
        check_machine(str(value), f"{where}: machine")
    except ValueError as exc:
        raise DiscoveryError(str(exc)) from None
    return str(value)


def _max_duration(value: Any, where: object) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise DiscoveryError(f"{where}: max_duration: {exc}") from None
    if seconds <= 0:
        raise DiscoveryError(f"{where}: max_duration must be positive")
    return seconds


def _log_level(value: Any, where: object) -> str:
    level = str(value).upper().replace("WARNING", "WARN")
    if level not in LOG_LEVELS:
        raise DiscoveryError(f"{where}: log_level is one of {', '.join(LOG_LEVELS)}")
    return level


def _env_limit(value: Any, where: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DiscoveryError(f"{where}: environment_concurrency is a whole number, 0 or more")
    return value


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


#: lines of a failed import's traceback kept for the dashboard (the last ones)
ERROR_LINES = 12


@dataclass(frozen=True)
class BrokenFile:
    """A task file that failed to import: its tasks are not served."""

    path: Path
    error: str
    #: the last lines of the error's traceback (where it failed, and why)
    lines: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"importing {self.path} failed: {self.error}"

    def relative_path(self, root: Path) -> str:
        """The file's path from the project's root (absolute when outside it)."""
        try:
            return str(self.path.relative_to(root))
        except ValueError:
            return str(self.path)


def _last_lines(exc: BaseException) -> tuple[str, ...]:
    text = "".join(traceback.format_exception(exc))
    lines = [line for line in text.splitlines() if line.strip()]
    return tuple(lines[-ERROR_LINES:])


def load_registry(config: ProjectConfig) -> TaskRegistry:
    """Import every task module of the project and return the tasks they declare.

    A file that fails to import stops everything (``DiscoveryError``) unless the
    config says ``skip_broken``; see :func:`load_tasks`.
    """
    registry, broken = load_tasks(config)
    if broken and not config.skip_broken:
        raise DiscoveryError(str(broken[0]))
    return registry


def load_tasks(config: ProjectConfig) -> tuple[TaskRegistry, list[BrokenFile]]:
    """Import every task module; the tasks of those that imported, and those that failed.

    A failed file's tasks are dropped whole, even those declared before the
    line that failed, so a half-imported file never serves half its tasks.
    """
    root = str(config.root)
    if root not in sys.path:
        sys.path.insert(0, root)
    registry = TaskRegistry()
    broken: list[BrokenFile] = []
    for path in config.task_files():
        name = module_name(config.root, path)
        found = TaskRegistry()
        try:
            with collecting_into(found):
                if name in sys.modules:
                    importlib.reload(sys.modules[name])
                else:
                    importlib.import_module(name)
        except Exception as exc:
            sys.modules.pop(name, None)
            broken.append(BrokenFile(path, repr(exc), _last_lines(exc)))
            continue
        try:
            for declared in found:
                registry.add(declared)
        except InvalidTaskOptions as exc:  # an id declared by two files
            broken.append(BrokenFile(path, str(exc), (f"{type(exc).__name__}: {exc}",)))
    for task in registry:
        task.apply_defaults(
            retry=config.retry, max_duration=config.max_duration, machine=config.machine
        )
    return registry, broken


def code_version(config: ProjectConfig) -> str:
    """A short hash of the task files' names and contents: the worker version."""
    digest = hashlib.sha256()
    for path in config.task_files():
        digest.update(str(path.relative_to(config.root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
