"""Find a project's task modules, import them into a registry, and fingerprint them."""

from __future__ import annotations

import hashlib
import importlib
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from triggerfish.sdk._registry import TaskRegistry, collecting_into

DEFAULT_DIRS = ["tasks"]


class DiscoveryError(Exception):
    pass


@dataclass(frozen=True)
class ProjectConfig:
    """``[tool.triggerfish]`` of the project's ``pyproject.toml``."""

    root: Path
    dirs: list[str] = field(default_factory=lambda: list(DEFAULT_DIRS))

    @classmethod
    def load(cls, root: Path, dirs: list[str] | None = None) -> ProjectConfig:
        root = root.resolve()
        configured: list[str] = list(DEFAULT_DIRS)
        pyproject = root / "pyproject.toml"
        if pyproject.is_file():
            with pyproject.open("rb") as fh:
                section = tomllib.load(fh).get("tool", {}).get("triggerfish", {})
            value = section.get("dirs", configured)
            if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
                raise DiscoveryError(
                    f"{pyproject}: [tool.triggerfish] dirs must be a list of folder names"
                )
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


def load_registry(config: ProjectConfig) -> TaskRegistry:
    """Import every task module of the project and return the tasks they declare."""
    root = str(config.root)
    if root not in sys.path:
        sys.path.insert(0, root)
    registry = TaskRegistry()
    with collecting_into(registry):
        for path in config.task_files():
            name = module_name(config.root, path)
            try:
                if name in sys.modules:
                    importlib.reload(sys.modules[name])
                else:
                    importlib.import_module(name)
            except Exception as exc:
                raise DiscoveryError(f"importing {path} failed: {exc!r}") from exc
    return registry


def code_version(config: ProjectConfig) -> str:
    """A short hash of the task files' names and contents: the worker version."""
    digest = hashlib.sha256()
    for path in config.task_files():
        digest.update(str(path.relative_to(config.root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
