"""The fault-injection suite's tasks (see ``chaos_tasks.py``)."""
