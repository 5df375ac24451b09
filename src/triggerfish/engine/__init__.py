"""The run engine: every rule about runs, with no knowledge of HTTP.

See ``README.md`` in this folder for the state diagram and who calls whom.
"""

from triggerfish.engine.engine import Engine

__all__ = ["Engine"]
