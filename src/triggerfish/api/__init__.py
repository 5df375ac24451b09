"""HTTP: the public REST API (Trigger.dev's paths and shapes), the worker API, the dashboard."""
