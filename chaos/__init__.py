"""The fault-injection suite: ``python -m chaos`` (see ``docs/reliability.md``).

A throwaway PostgreSQL instance (``postgres.py``), two ``triggerfish server``
processes and two workers on it (``cluster.py``), a mixed load of durable runs
(``load.py``, the tasks in ``project/``), faults injected while it runs
(``faults.py``), and a check of an independent side-effect table that the
tasks write to (``effects.py``, ``check.py``). ``suite.py`` puts them together.
"""
