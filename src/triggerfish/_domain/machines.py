"""Trigger.dev's machine presets and the memory each one gives a run."""

from __future__ import annotations

#: preset name -> memory limit in MiB
MACHINE_MEMORY_MB: dict[str, int] = {
    "micro": 256,
    "small-1x": 512,
    "small-2x": 1024,
    "medium-1x": 2048,
    "medium-2x": 4096,
    "large-1x": 8192,
    "large-2x": 16384,
}
DEFAULT_MACHINE = "small-1x"


def check_machine(name: str, where: str) -> str:
    if name not in MACHINE_MEMORY_MB:
        known = ", ".join(MACHINE_MEMORY_MB)
        raise ValueError(f"{where}: unknown machine {name!r}; use one of {known}")
    return name
