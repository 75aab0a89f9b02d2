"""POST /api/generate-token and Bearer authentication, as kimisms-api.md documents them."""

from __future__ import annotations

import asyncio

import jwt
import pytest

from tests.sandbox.support import CLIENT_ID, TOKEN_BODY, InProcess, MakeInProcess, MakeLive
from tracker.sandbox import tokens


async def test_it_issues_a_bearer_jwt_for_valid_credentials(provider: InProcess) -> None:
    """Valid client credentials get the documented 200 body with an HS256 JWT."""
    response = await provider.client.post("/api/generate-token", json=TOKEN_BODY)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token_type", "access_token", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 2592000
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"
    claims = jwt.decode(
        body["access_token"],
        provider.sandbox.config.jwt_secret,
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["sub"] == CLIENT_ID
    assert claims["exp"] - claims["iat"] == 2592000
    assert claims["iat"] == int(provider.clock())


async def test_it_lists_every_missing_field(provider: InProcess) -> None:
    """An empty body names each required field with DRF's message."""
    response = await provider.client.post("/api/generate-token", json={})

    assert response.status_code == 400
    required = ["This field is required."]
    assert response.json() == {
        "grant_type": required,
        "client_id": required,
        "client_secret": required,
    }


async def test_it_refuses_a_grant_type_other_than_client_credentials(provider: InProcess) -> None:
    """Only the client_credentials grant exists; others are a 400 on grant_type."""
    body = {**TOKEN_BODY, "grant_type": "password"}
    response = await provider.client.post("/api/generate-token", json=body)

    assert response.status_code == 400
    assert response.json() == {"grant_type": ['"password" is not a valid choice.']}


@pytest.mark.parametrize("field", ["client_id", "client_secret"])
async def test_it_answers_bad_credentials_with_the_documented_400(
    provider: InProcess, field: str
) -> None:
    """A wrong id or secret gets exactly the documented invalid-credentials body."""
    body = {**TOKEN_BODY, field: "wrong"}
    response = await provider.client.post("/api/generate-token", json=body)

    assert response.status_code == 400
    assert response.json() == {"credentials": ["Invalid credentials"]}


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"a string"'])
async def test_it_refuses_a_body_that_is_not_a_json_object(provider: InProcess, raw: bytes) -> None:
    """Unparseable or non-object bodies are a 400 with a detail, not a crash."""
    response = await provider.client.post(
        "/api/generate-token", content=raw, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str)


async def test_a_token_expires_after_its_lifetime(make_in_process: MakeInProcess) -> None:
    """A 1-second token works until its exp, then gets the token-not-valid 401."""
    provider = await make_in_process(token_lifetime_seconds=1)
    provider.clock.now = 1_800_000_000.0
    token = await provider.token()

    provider.clock.advance(0.5)
    headers = {"Authorization": f"Bearer {token}"}
    valid = await provider.client.post("/api/send-sms", json={}, headers=headers)
    provider.clock.advance(0.5)
    expired = await provider.client.post("/api/send-sms", json={}, headers=headers)

    assert valid.status_code == 400  # authenticated; the empty body is what is wrong
    assert expired.status_code == 401
    assert expired.json() == {"detail": tokens.NOT_VALID}


async def test_a_token_expires_over_real_http(make_live: MakeLive) -> None:
    """With a real clock, a 1-second token is refused once that second has passed."""
    live = make_live(token_lifetime_seconds=1)
    token = await live.token()

    await asyncio.sleep(1.05)
    response = await live.client.post(
        "/api/send-sms", json={}, headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 401
    assert response.json() == {"detail": tokens.NOT_VALID}


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic c2FuZGJveDpzZWNyZXQ=", "Token abc", "Bearer a b"],
)
async def test_a_missing_or_malformed_header_is_the_documented_401(
    provider: InProcess, authorization: str | None
) -> None:
    """No usable Authorization header gets the documented not-provided detail."""
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await provider.client.post("/api/send-sms", json={}, headers=headers)

    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "claims_key",
    ["foreign_signature", "other_client", "garbage"],
)
async def test_a_token_not_issued_by_the_sandbox_is_refused(
    provider: InProcess, claims_key: str
) -> None:
    """Bad signatures, tokens for another client and non-JWTs are all 401 not-valid."""
    now = int(provider.clock())
    claims = {"sub": CLIENT_ID, "iat": now, "exp": now + 60}
    secret = provider.sandbox.config.jwt_secret
    token = {
        "foreign_signature": jwt.encode(claims, "another-secret-of-32-bytes-length", "HS256"),
        "other_client": jwt.encode({**claims, "sub": "someone-else"}, secret, "HS256"),
        "garbage": "not-a-jwt",
    }[claims_key]

    response = await provider.client.post(
        "/api/send-sms", json={}, headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 401
    assert response.json() == {"detail": "Given token not valid for any token type"}
