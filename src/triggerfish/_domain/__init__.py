"""The vocabulary every layer shares, with no I/O and no imports of ours.

Statuses and the transition table (``states``), machine presets
(``machines``), retry math (``retry``), the time shapes stored and sent
(``times``), the run-list filter (``filters``), and the job a task process
runs with the outcomes an attempt ends in (``attempts``). The store, the
engine, the API, the worker and the SDK all import from here; this package
imports none of them (an import-linter contract in ``pyproject.toml`` checks
it).
"""
