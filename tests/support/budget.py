"""Hypothesis example budgets: the full count in `make test`, a tenth in `make test-quick` (``TEST_QUICK=1``)."""

from __future__ import annotations

import os


def examples(full: int) -> int:
    return max(10, full // 10) if os.environ.get("TEST_QUICK") else full
