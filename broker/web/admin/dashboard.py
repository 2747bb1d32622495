"""The dashboard: counts, recent denials and offboardings, and a server-rendered SVG chart."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from broker.admin import queries
from broker.admin.sessions import VIEW, ConsoleUser
from broker.storage.models import utcnow
from broker.web.admin.common import ConsoleRoute, console_call, render
from broker.web.deps import State

router = APIRouter(prefix="/admin", route_class=ConsoleRoute, include_in_schema=False)
WIDTH, HEIGHT, LEFT, BOTTOM = 720, 200, 36, 24


@dataclass(frozen=True)
class Chart:
    """Two series per hour as SVG coordinates (drawn by templates/admin/chart.svg.html, no script)."""

    top: int
    bars: list[tuple[float, float, float, float, float, str, int, int]]
    ticks: list[tuple[float, str]]


def chart(data: queries.Dashboard) -> Chart:
    top = max([*data.issued_per_hour, *data.denied_per_hour, 1])
    slot = (WIDTH - LEFT) / 24
    plot = HEIGHT - BOTTOM - 8

    def y(value: int) -> float:
        return round(8 + plot - plot * value / top, 1)

    bars = []
    for i, (issued, denied) in enumerate(zip(data.issued_per_hour, data.denied_per_hour, strict=True)):
        x = round(LEFT + i * slot + 2, 1)
        width = round(slot / 2 - 2, 1)
        bars.append((x, y(issued), width, y(denied), round(x + width + 1, 1),
                     data.hours[i].strftime("%H:00"), issued, denied))
    ticks = [(round(LEFT + i * slot + slot / 2, 1), data.hours[i].strftime("%H:00")) for i in range(0, 24, 3)]
    return Chart(top=top, bars=bars, ticks=ticks)


@router.get("")
async def dashboard(request: Request, state: State) -> Response:
    def view(db: Session, console: ConsoleUser) -> Response:
        data = queries.dashboard(db, utcnow())
        return render(request, "admin/dashboard.html", console,
                      {"data": data, "chart": chart(data), "base": HEIGHT - BOTTOM, "width": WIDTH, "height": HEIGHT,
                       "left": LEFT, "nav": "dashboard"})

    return await console_call(request, state, VIEW, view)
