"""The ``triggerfish`` command."""
