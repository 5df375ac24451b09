"""The fault-injection suite (``chaos/``): its checker, and a tiny run of the whole."""
