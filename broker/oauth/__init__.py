"""The OAuth 2.1 protocol core, on authlib: authorization, tokens, clients, revocation, introspection.

Nothing here knows HTTP frameworks: ``broker.web`` turns requests into ``Params`` and plain
values, calls in, and renders what comes out (or the ``OAuth2Error`` raised).
"""
