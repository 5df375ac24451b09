"""Find a project's task modules, import them into a registry, and fingerprint them."""

from __future__ import annotations

import hashlib
import importlib
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from triggerfish.errors import InvalidTaskOptions
from triggerfish.sdk._registry import TaskRegistry, collecting_into

DEFAULT_DIRS = ["tasks"]


class DiscoveryError(Exception):
    pass


@dataclass(frozen=True)
class ProjectConfig:
    """``[tool.triggerfish]`` of the project's ``pyproject.toml``."""

    root: Path
    dirs: list[str] = field(default_factory=lambda: list(DEFAULT_DIRS))
    #: serve the tasks of the files that import, skipping (and reporting) those
    #: that fail, rather than refusing to start (``triggerfish dev``)
    skip_broken: bool = False

    @classmethod
    def load(cls, root: Path, dirs: list[str] | None = None) -> ProjectConfig:
        root = root.resolve()
        configured: list[str] = list(DEFAULT_DIRS)
        pyproject, own = root / "pyproject.toml", root / "triggerfish.toml"
        section: dict[str, object] | None = None
        where = ""
        if pyproject.is_file():
            with pyproject.open("rb") as fh:
                section = tomllib.load(fh).get("tool", {}).get("triggerfish")
            where = f"{pyproject}: [tool.triggerfish]"
        if own.is_file():
            if section is not None:
                raise DiscoveryError(
                    f"{root} has two Triggerfish configs, [tool.triggerfish] in "
                    "pyproject.toml and triggerfish.toml; keep one"
                )
            with own.open("rb") as fh:
                section = tomllib.load(fh)
            where = str(own)
        value = (section or {}).get("dirs", configured)
        if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
            raise DiscoveryError(f"{where} dirs must be a list of folder names")
        configured = value
        return cls(root=root, dirs=dirs or configured)

    def task_files(self) -> list[Path]:
        files: list[Path] = []
        for name in self.dirs:
            folder = (self.root / name).resolve()
            if not folder.is_dir():
                raise DiscoveryError(
                    f"task folder {folder} does not exist; create it or set "
                    "[tool.triggerfish] dirs in pyproject.toml (or pass --dir)"
                )
            files.extend(p for p in sorted(folder.rglob("*.py")) if "__pycache__" not in p.parts)
        return files


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@dataclass(frozen=True)
class BrokenFile:
    """A task file that failed to import: its tasks are not served."""

    path: Path
    error: str

    def __str__(self) -> str:
        return f"importing {self.path} failed: {self.error}"


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
            broken.append(BrokenFile(path, repr(exc)))
            continue
        try:
            for declared in found:
                registry.add(declared)
        except InvalidTaskOptions as exc:  # an id declared by two files
            broken.append(BrokenFile(path, str(exc)))
    return registry, broken


def code_version(config: ProjectConfig) -> str:
    """A short hash of the task files' names and contents: the worker version."""
    digest = hashlib.sha256()
    for path in config.task_files():
        digest.update(str(path.relative_to(config.root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
