"""Jinja2 templates from the shipped ``templates/`` directory (``broker.bundled``), autoescaped."""

from __future__ import annotations

from fastapi.templating import Jinja2Templates

from broker.bundled import TEMPLATES

templates = Jinja2Templates(directory=str(TEMPLATES))
templates.env.autoescape = True
