"""What differs between the two databases, and what the engine may ask of each.

The engine never branches on a database's name: it asks
``db.capabilities.<name>`` (:class:`Capabilities`), and the store's dialect
modules (``sqlite.py``, ``postgresql.py``) say what each database can do and
hold the code only one of them needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DialectName = Literal["sqlite", "postgresql"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a database lets the engine do, each with the store function it enables."""

    #: unconstrained runs are claimed, and a worker's successes reported with its
    #: next claim, in one statement (``store/runs/transitions.py``)
    one_statement_claim: bool
    #: a plain trigger's insert is a transaction of its own on a held connection
    #: (``store.runs.insert_queued_run_alone``, ``Database.fetch_alone``)
    one_statement_trigger: bool
    #: a journal entry and the guard on its attempt are one statement
    #: (``store.journal.guarded_upsert`` and its ``_alone`` form)
    one_statement_journal_write: bool
    #: a one-statement read may skip BEGIN/COMMIT (``store.journal.single_statement``)
    reads_without_transaction: bool
    #: ``FOR UPDATE [SKIP LOCKED]`` locks single rows, so claimers of a queue take
    #: turns on its row (SQLite's writers take turns on the whole database)
    row_locks: bool
    #: the default seconds a busy worker holds a report batch back so more
    #: reports share a commit: worth it where a commit is a round trip and a
    #: disk flush (``ServerSettings.report_linger``)
    report_linger: float
    #: write transactions run side by side, so ids from a sequence may commit out
    #: of order (the change feed's horizon waits for the missing ones)
    concurrent_writers: bool
