"""File downloads the operators' pages and the admin API offer (CSV exports)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from fastapi.responses import Response

from broker.web.headers import NO_STORE

# A spreadsheet runs a cell that starts like a formula; names come from IdPs and users (OWASP: CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(rows: Iterable[Sequence[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows([["'" + cell if cell.startswith(_FORMULA_STARTS) else cell for cell in row] for row in rows])
    return out.getvalue()


def csv_response(rows: Iterable[Sequence[str]], filename: str) -> Response:
    return Response(csv_text(rows), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{filename}"', **NO_STORE})
