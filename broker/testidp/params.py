"""The test IdP's request parameters: ``broker.params`` raising the test IdP's ``invalid_request``."""

from __future__ import annotations

from broker import params
from broker.testidp.errors import InvalidRequest


class ProviderParams(params.RequestParams):
    error = InvalidRequest
