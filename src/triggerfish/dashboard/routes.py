"""Dashboard pages. For now a landing page that points at the API and the CLI."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

router = APIRouter(include_in_schema=False)
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(),
)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> str:
    base = str(request.base_url).rstrip("/")
    return _templates.get_template("home.html").render(api_url=base)
