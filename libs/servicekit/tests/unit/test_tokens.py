"""The verifier every service uses accepts only genuine access tokens of the auth service."""

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from servicekit._http import install_http_basics
from servicekit._tokens import CurrentPrincipal, TokenError, TokenVerifier, http_jwks_fetcher
from servicekit.testing import TokenFactory


def claims(factory: TokenFactory, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": factory.issuer,
        "aud": factory.audience,
        "sub": "5",
        "username": "ann",
        "role": "seller",
        "typ": "access",
        "iat": now,
        "exp": now + 600,
        "jti": "j1",
    }
    base.update(overrides)
    return base


async def test_genuine_token_is_accepted() -> None:
    factory = TokenFactory()
    principal = await factory.verifier().verify(
        factory.access_token(user_id=5, username="ann", role="seller")
    )
    assert (principal.user_id, principal.username, principal.role) == (5, "ann", "seller")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_tokens(factory: TokenFactory) -> dict[str, str]:
    public_jwk = json.dumps(factory.jwks()["keys"][0]).encode()
    genuine = factory.access_token(user_id=5, username="ann", role="seller")
    header, payload, signature = genuine.split(".")
    tampered_payload = _b64(json.dumps(claims(factory, role="admin")).encode())
    stranger = Ed25519PrivateKey.generate()
    return {
        "alg none": jwt.encode(claims(factory), "", algorithm="none", headers={"kid": factory.kid}),
        "hs256 with public key": _b64(
            json.dumps({"alg": "HS256", "kid": factory.kid, "typ": "JWT"}).encode()
        )
        + "."
        + payload
        + "."
        + _b64(_hmac(public_jwk, f"{header}.{payload}".encode())),
        "expired": factory.access_token(
            user_id=5, username="ann", role="seller", exp=int(time.time()) - 120
        ),
        "wrong audience": factory.access_token(user_id=5, username="ann", role="seller", aud="x"),
        "wrong issuer": factory.access_token(user_id=5, username="ann", role="seller", iss="x"),
        "tampered payload": f"{header}.{tampered_payload}.{signature}",
        "unknown kid": jwt.encode(
            claims(factory), stranger, algorithm="EdDSA", headers={"kid": "other"}
        ),
        "known kid, other key": jwt.encode(
            claims(factory), stranger, algorithm="EdDSA", headers={"kid": factory.kid}
        ),
        "refresh as access": factory.access_token(
            user_id=5, username="ann", role="seller", typ="refresh"
        ),
        "garbage": "not-a-token",
    }


def _hmac(key: bytes, message: bytes) -> bytes:
    import hashlib
    import hmac

    return hmac.new(key, message, hashlib.sha256).digest()


@pytest.mark.parametrize(
    "case",
    [
        "alg none",
        "hs256 with public key",
        "expired",
        "wrong audience",
        "wrong issuer",
        "tampered payload",
        "unknown kid",
        "known kid, other key",
        "refresh as access",
        "garbage",
    ],
)
async def test_forged_or_unfit_tokens_are_rejected(case: str) -> None:
    factory = TokenFactory()
    with pytest.raises(TokenError):
        await factory.verifier().verify(forged_tokens(factory)[case])


async def test_unknown_kid_triggers_one_refetch_then_the_new_key_is_trusted() -> None:
    old, new = TokenFactory(kid="old"), TokenFactory(kid="new")
    published = {"keys": old.jwks()["keys"]}
    fetches = 0

    async def fetch() -> dict[str, Any]:
        nonlocal fetches
        fetches += 1
        return published

    verifier = TokenVerifier(fetch, issuer=old.issuer, audience=old.audience, refetch_interval=0.0)
    await verifier.verify(old.access_token(user_id=1, username="a", role="customer"))
    published = {"keys": old.jwks()["keys"] + new.jwks()["keys"]}  # key rolled in
    principal = await verifier.verify(new.access_token(user_id=2, username="b", role="customer"))
    assert principal.user_id == 2
    assert fetches == 2


def verifier_of(factory: TokenFactory, **options: Any) -> TokenVerifier:
    jwks = factory.jwks()

    async def fetch() -> dict[str, Any]:
        return jwks

    return TokenVerifier(fetch, issuer=factory.issuer, audience=factory.audience, **options)


async def test_a_verified_token_is_remembered_until_it_expires() -> None:
    factory = TokenFactory()
    verifier = verifier_of(factory, leeway=0.0)
    # Seconds of validity: enough for the two verifications below on a loaded machine (a fresh
    # box under CI load took more than one), short enough to wait for.
    lifetime = 5
    token = factory.access_token(
        user_id=5, username="ann", role="seller", exp=int(time.time()) + lifetime
    )
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first  # remembered, not decoded again
    await asyncio.sleep(
        max(0.0, jwt.decode(token, options={"verify_signature": False})["exp"] - time.time()) + 0.1
    )
    for _ in range(2):  # expired: refused, and not remembered either
        with pytest.raises(TokenError):
            await verifier.verify(token)


async def test_a_withdrawn_key_stops_being_honoured_at_the_next_refetch() -> None:
    old, new = TokenFactory(kid="old"), TokenFactory(kid="new")
    published = old.jwks()

    async def fetch() -> dict[str, Any]:
        return published

    verifier = TokenVerifier(
        fetch, issuer=old.issuer, audience=old.audience, refetch_interval=0.0, cache_seconds=0.0
    )
    token = old.access_token(user_id=1, username="a", role="customer")
    await verifier.verify(token)
    published = new.jwks()  # the old key is withdrawn
    await verifier.verify(new.access_token(user_id=2, username="b", role="customer"))
    with pytest.raises(TokenError):
        await verifier.verify(token)


async def test_the_memory_is_bounded() -> None:
    factory = TokenFactory()
    verifier = verifier_of(factory, remembered_tokens=2)
    tokens = [factory.access_token(user_id=n, username=f"u{n}", role="customer") for n in (1, 2, 3)]
    principals = [await verifier.verify(token) for token in tokens]
    assert await verifier.verify(tokens[2]) is principals[2]
    assert await verifier.verify(tokens[0]) is not principals[0]  # forgotten, verified again


class HangingServer:
    """A TCP server that accepts connections and never answers: auth hanging (issue 15)."""

    def __init__(self) -> None:
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/jwks.json"

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._writers:
            writer.close()
        self._server.close()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)


async def test_a_hanging_key_set_costs_one_fetch_for_all_waiting_requests() -> None:
    factory = TokenFactory()
    hanging = HangingServer()
    async with hanging as url:
        verifier = TokenVerifier(
            http_jwks_fetcher(url, timeout=0.5),
            issuer=factory.issuer,
            audience=factory.audience,
            refetch_interval=60.0,
        )
        token = factory.access_token(user_id=5, username="ann", role="seller")
        results = await asyncio.gather(
            *(verifier.verify(token) for _ in range(6)), return_exceptions=True
        )
        assert all(isinstance(r, TokenError) for r in results), results
        assert hanging.connections == 1, "one fetch, awaited by all six"

        # Backed off: the next requests are refused at once, without asking again.
        with pytest.raises(TokenError, match="signing keys unavailable"):
            await verifier.verify(token)
        assert hanging.connections == 1


async def test_known_keys_are_kept_while_the_key_set_is_unreachable() -> None:
    factory = TokenFactory()
    calls = 0
    reachable = True

    async def fetch() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if not reachable:
            raise OSError("auth is down")
        return factory.jwks()

    verifier = TokenVerifier(
        fetch,
        issuer=factory.issuer,
        audience=factory.audience,
        cache_seconds=0.0,  # every verification finds the keys stale and wants a fetch
        refetch_interval=60.0,
    )
    first = factory.access_token(user_id=5, username="ann", role="seller")
    await verifier.verify(first)
    reachable = False
    for user_id in (6, 7, 8):
        token = factory.access_token(user_id=user_id, username="bo", role="customer")
        assert (await verifier.verify(token)).user_id == user_id
    assert calls == 2, "one failed fetch, then backed off while the known key serves"


async def test_a_valid_token_of_a_revoked_user_is_refused_every_time_it_is_checked() -> None:
    """The revocation check runs per request, after the remembered verification."""
    tokens = TokenFactory()
    revoked: set[int] = set()

    async def is_revoked(user_id: int) -> bool:
        return user_id in revoked

    app = FastAPI()
    install_http_basics(app)
    app.state.token_verifier = tokens.verifier()
    app.state.revoked_users = is_revoked

    @app.get("/who/")
    async def who(principal: CurrentPrincipal) -> int:
        return principal.user_id

    headers = tokens.headers(user_id=7, username="alice", role="customer")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/who/", headers=headers)).json() == 7
        revoked.add(7)
        refused = await client.get("/who/", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["code"] == "user_inactive"
        revoked.clear()  # reactivated
        assert (await client.get("/who/", headers=headers)).status_code == 200
