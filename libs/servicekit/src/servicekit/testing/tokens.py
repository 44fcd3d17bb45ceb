"""Access tokens signed the way the auth service signs them, for other services' tests."""

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from servicekit._settings import DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER
from servicekit._tokens import TokenVerifier


class TokenFactory:
    """Signs access tokens the way the auth service does, for other services' tests.

    ``verifier()`` trusts only this factory's public JWK Set, so a test exercises the same
    verification path as production without the auth service running.
    """

    def __init__(
        self,
        *,
        issuer: str = DEFAULT_JWT_ISSUER,
        audience: str = DEFAULT_JWT_AUDIENCE,
        kid: str = "test-key",
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.kid = kid
        self._key = Ed25519PrivateKey.generate()

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self._key.public_key()))
        public.update(kid=self.kid, use="sig", alg="EdDSA")
        return {"keys": [public]}

    def verifier(self) -> TokenVerifier:
        jwks = self.jwks()

        async def fetch() -> dict[str, Any]:
            return jwks

        return TokenVerifier(fetch, issuer=self.issuer, audience=self.audience)

    def access_token(self, *, user_id: int, username: str, role: str, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "username": username,
            "role": role,
            "typ": "access",
            "iat": now,
            "exp": now + 900,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self.kid})

    def headers(self, *, user_id: int, username: str, role: str) -> dict[str, str]:
        token = self.access_token(user_id=user_id, username=username, role=role)
        return {"Authorization": f"Bearer {token}"}
