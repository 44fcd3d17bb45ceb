"""Another service verifies this service's tokens with nothing but the published JWK Set."""

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from auth.app import create_app
from auth.keys import KeyRing
from auth.settings import Settings
from servicekit._settings import DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER
from servicekit._tokens import TokenError, TokenVerifier, http_jwks_fetcher
from tests.helpers import bearer, register, sign_in

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The auth app on a real port; yields its base URL."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture
def verifier(served: str) -> TokenVerifier:
    """What another service builds from its settings: the JWKS URL, the issuer, the audience."""
    return TokenVerifier(
        http_jwks_fetcher(f"{served}/api/auth/.well-known/jwks.json"),
        issuer=DEFAULT_JWT_ISSUER,
        audience=DEFAULT_JWT_AUDIENCE,
    )


@pytest.fixture
async def tokens(served: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=served) as client:
        await register(client, "alice", role="seller")
        return await sign_in(client)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def _forge(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{_b64(signature)}"


async def test_the_jwk_set_publishes_the_signing_key(served: str, key_ring: KeyRing) -> None:
    async with httpx.AsyncClient(base_url=served) as client:
        response = await client.get("/api/auth/.well-known/jwks.json")
    assert response.status_code == 200
    (key,) = response.json()["keys"]
    assert key["kid"] == key_ring.kid
    assert {key["kty"], key["crv"], key["alg"], key["use"]} == {"OKP", "Ed25519", "EdDSA", "sig"}
    assert "d" not in key  # never the private part


async def test_a_real_access_token_verifies(
    verifier: TokenVerifier, tokens: dict[str, str]
) -> None:
    principal = await verifier.verify(tokens["access"])
    assert principal.username == "alice"
    assert principal.role == "seller"
    assert principal.user_id == int(_claims(tokens["access"])["sub"])


async def test_alg_none_is_rejected(verifier: TokenVerifier, tokens: dict[str, str]) -> None:
    header = {
        "alg": "none",
        "typ": "JWT",
        "kid": jwt.get_unverified_header(tokens["access"])["kid"],
    }
    with pytest.raises(TokenError):
        await verifier.verify(_forge(header, _claims(tokens["access"])))


async def test_hs256_with_the_public_key_as_secret_is_rejected(
    verifier: TokenVerifier, tokens: dict[str, str], key_ring: KeyRing
) -> None:
    public_pem = key_ring.signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": key_ring.kid}
    for secret in (public_pem, _b64(public_pem).encode()):
        forged = _forge(
            header,
            _claims(tokens["access"]),
            lambda data, secret=secret: hmac.new(secret, data, hashlib.sha256).digest(),
        )
        with pytest.raises(TokenError):
            await verifier.verify(forged)


@pytest.mark.parametrize(
    "change",
    [
        {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 4500},
        {"aud": "someone-else"},
        {"iss": "https://evil.example"},
        {"typ": "refresh"},
    ],
    ids=["expired", "wrong-aud", "wrong-iss", "refresh-typ"],
)
async def test_tokens_signed_by_the_real_key_with_bad_claims_are_rejected(
    verifier: TokenVerifier, tokens: dict[str, str], key_ring: KeyRing, change: dict[str, Any]
) -> None:
    claims = {**_claims(tokens["access"]), **change}
    token = key_ring.sign(claims)
    with pytest.raises(TokenError):
        await verifier.verify(token)


async def test_a_tampered_payload_is_rejected(
    verifier: TokenVerifier, tokens: dict[str, str]
) -> None:
    header, _, signature = tokens["access"].split(".")
    claims = {**_claims(tokens["access"]), "role": "seller", "username": "mallory", "sub": "1"}
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    with pytest.raises(TokenError):
        await verifier.verify(tampered)


async def test_an_unknown_kid_is_rejected(verifier: TokenVerifier, tokens: dict[str, str]) -> None:
    other = Ed25519PrivateKey.generate()
    token = jwt.encode(
        _claims(tokens["access"]), other, algorithm="EdDSA", headers={"kid": uuid.uuid4().hex}
    )
    with pytest.raises(TokenError):
        await verifier.verify(token)


async def test_a_refresh_token_is_not_an_access_token(
    verifier: TokenVerifier, tokens: dict[str, str], served: str
) -> None:
    with pytest.raises(TokenError):
        await verifier.verify(tokens["refresh"])
    async with httpx.AsyncClient(base_url=served) as client:
        response = await client.get("/api/auth/me/", headers=bearer(tokens["refresh"]))
    assert response.status_code == 401


async def test_tokens_of_every_published_key_verify(
    settings: Settings, key_ring: KeyRing, tokens: dict[str, str]
) -> None:
    """After a key roll the old public key stays published: its tokens keep verifying."""
    rolled = KeyRing(
        signing_key=Ed25519PrivateKey.generate(), published=(key_ring.signing_key.public_key(),)
    )
    app = create_app(settings, keys=rolled)
    transport = httpx.ASGITransport(app=app)

    async def fetch() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=transport, base_url="http://auth") as client:
            body: dict[str, Any] = (await client.get("/api/auth/.well-known/jwks.json")).json()
            return body

    verifier = TokenVerifier(fetch, issuer=DEFAULT_JWT_ISSUER, audience=DEFAULT_JWT_AUDIENCE)
    new_token = rolled.sign({**_claims(tokens["access"]), "jti": uuid.uuid4().hex})
    assert (await verifier.verify(new_token)).username == "alice"
    assert (await verifier.verify(tokens["access"])).username == "alice"
    assert len((await fetch())["keys"]) == 2
    await app.state.engine.dispose()
