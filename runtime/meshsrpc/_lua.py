"""Loads the Lua scripts that live as ``.lua`` files next to the code that runs them."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def lua_source(package: str, name: str) -> str:
    """Return the text of ``<name>.lua`` shipped inside ``package``."""
    return resources.files(package).joinpath(f"{name}.lua").read_text(encoding="utf-8")
