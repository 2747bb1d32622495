"""The admin console at ``/admin``: server-rendered pages for IT admins, security teams and auditors.

Sign-in goes through the upstream IdP (``auth``); every page and action checks the console role on the
server, every form carries the session's CSRF token (``common``). The pages call the same service
functions as the CLI (``broker.registry``, ``broker.lifecycle``, ``broker.admin``).
"""

from __future__ import annotations

from fastapi import APIRouter

from broker.web.admin import access, audit, auth, clients, dashboard, policies, servers, system, users

router = APIRouter()
for module in (auth, dashboard, servers, users, access, policies, clients, audit, system):
    router.include_router(module.router)
