"""meshgen's Jinja templates (``*.py.j2``), shipped as package data."""
