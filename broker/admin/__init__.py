"""Admin-console service code that is not already in ``registry``/``lifecycle``/``oauth``: console sessions
and roles, client status changes shared with the CLI, and the read-only queries the console pages show.

No web framework here (``broker.web.admin`` adapts it to HTTP); functions take a session and never commit.
"""
