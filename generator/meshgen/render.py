"""The app model → `<stem>_srpc.py`, through the logic-free templates, then ruff format."""

from __future__ import annotations

import importlib.resources

import jinja2

from . import __version__
from .formatting import format_python
from .model import App

TEMPLATES_PACKAGE = "meshgen.templates"


def _load_template(name: str) -> str:
    # Read through importlib.resources so that templates are found the same way in a
    # wheel, an editable install, or a zip.
    return (importlib.resources.files(TEMPLATES_PACKAGE) / name).read_text(encoding="utf-8")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def environment() -> jinja2.Environment:
    """The templates' environment, for the modules that render their own files."""
    return _environment()


def render_header(source: str) -> str:
    """The first lines of every generated Python file."""
    return _environment().get_template("header.py.j2").render(version=__version__, source=source)


def render_app(app: App, *, gateway: bool = False) -> str:
    """The typed servers, client and TypedDicts of one app, formatted."""
    template = _environment().get_template("srpc.py.j2")
    code = template.render(app=app, version=__version__, source=app.source, gateway=gateway)
    return format_python(code, f"{app.stem}_srpc.py")
