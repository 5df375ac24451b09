"""Integrations (see _kit.py)."""
