"""Jinja2 templates from the top-level ``templates/`` directory, autoescaped."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
STATIC_DIR = TEMPLATES_DIR / "static"  # served at /static: the stylesheet (CSP forbids inline styles)

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.autoescape = True
