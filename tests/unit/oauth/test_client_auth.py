"""The client authentication rules as plain functions (``broker.oauth.client_auth``)."""

from __future__ import annotations

import base64

import pytest

from broker.oauth import client_auth
from broker.oauth.errors import InvalidClientError, InvalidRequestError

BASIC = {"Authorization": "Basic " + base64.b64encode(b"agent:s3cret").decode()}


@pytest.mark.parametrize("headers,form,method", [
    ({}, {"client_id": "agent"}, "none"),
    (BASIC, {}, "client_secret_basic"),
    ({"authorization": BASIC["Authorization"]}, {}, "client_secret_basic"),
    ({}, {"client_id": "agent", "client_secret": "s3cret"}, "client_secret_post"),
    ({}, {"client_assertion_type": client_auth.ASSERTION_TYPE, "client_assertion": "x.y.z"}, "private_key_jwt"),
    ({"Authorization": "Basic " + base64.b64encode(b"agent:").decode()}, {"client_id": "agent"}, "none"),
    ({"Authorization": "Bearer abc"}, {"client_id": "agent"}, "none"),
    ({"Authorization": "Basic %%%"}, {}, "client_secret_basic"),  # malformed, still an attempt at Basic
])
def test_the_method_a_request_presents(headers: dict[str, str], form: dict[str, str], method: str) -> None:
    assert client_auth.presented_method(client_auth.presented_by(headers, form)) == method


def test_two_methods_in_one_request_are_invalid_request() -> None:
    presented = client_auth.presented_by(BASIC, {"client_secret": "s3cret", "client_assertion": "x.y.z"})
    with pytest.raises(InvalidRequestError) as refused:
        client_auth.presented_method(presented)
    assert "client_secret_basic and client_secret_post and private_key_jwt" in refused.value.description


def test_a_registered_method_passes_and_another_names_both() -> None:
    client_auth.check_registered("client_secret_post", ("client_secret_basic", "client_secret_post"))
    with pytest.raises(InvalidClientError) as refused:
        client_auth.check_registered("client_secret_post", ("client_secret_basic",))
    assert refused.value.status_code == 401
    assert refused.value.description == ("the client is registered for client_secret_basic; "
                                         "the request used client_secret_post")


def test_no_credentials_from_a_confidential_client() -> None:
    with pytest.raises(InvalidClientError) as refused:
        client_auth.check_registered("none", ("private_key_jwt", "client_secret_basic"))
    assert refused.value.description == ("the client is registered for client_secret_basic or private_key_jwt; "
                                         "the request carried no client credentials")


def test_an_endpoint_that_needs_authentication_says_which_methods_it_takes() -> None:
    client_auth.check_accepted("private_key_jwt", client_auth.CONFIDENTIAL_METHODS)
    with pytest.raises(InvalidClientError) as refused:
        client_auth.check_accepted("none", client_auth.CONFIDENTIAL_METHODS)
    assert refused.value.description == ("this request needs client authentication with client_secret_basic, "
                                         "client_secret_post or private_key_jwt; the request carried no client "
                                         "credentials")


def test_a_refused_credential_never_lists_registered_methods() -> None:
    error = client_auth.credential_refused("client_secret_basic")
    assert error.description == "client authentication failed: the client secret (Authorization: Basic) is wrong"
    assert "registered" not in client_auth.credential_refused("private_key_jwt", "JWT ID is used before.").description
