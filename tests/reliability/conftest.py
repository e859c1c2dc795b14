"""Reliability tests (issue 8); ``tests.generated`` is importable via pytest's pythonpath."""
