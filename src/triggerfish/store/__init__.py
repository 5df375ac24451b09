"""Persistence: tables, migrations and the named queries the engine needs.

Every query is a function taking an ``AsyncConnection`` so that the engine can
compose several of them in one transaction.
"""
