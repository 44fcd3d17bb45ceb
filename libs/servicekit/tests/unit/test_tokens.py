"""The verifier every service uses accepts only genuine access tokens of the auth service."""

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from servicekit.testing import TokenFactory
from servicekit.tokens import TokenError, TokenVerifier


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
