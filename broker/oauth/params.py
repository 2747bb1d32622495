"""Request parameters for the OAuth endpoints: ``broker.params`` raising ``invalid_request``."""

from __future__ import annotations

from broker import params
from broker.oauth.errors import InvalidRequest


class Params(params.RequestParams):
    error = InvalidRequest
