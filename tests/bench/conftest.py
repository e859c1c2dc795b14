"""The bench package lives at the repository root (on pytest's pythonpath)."""
