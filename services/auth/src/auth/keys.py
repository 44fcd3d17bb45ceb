"""The Ed25519 key that signs tokens, and the JWK Set that publishes the public keys.

A key's ``kid`` is its RFC 7638 JWK thumbprint, so it never has to be configured and cannot
collide. Rolling a key: publish the next key (``extra_public_key_files``) for longer than the
verifiers' JWKS cache, switch the signing key, keep the old public key published until the last
refresh token it signed has expired.
"""

import base64
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from auth.settings import Settings

ALGORITHM = "EdDSA"
DEV_KEY_FILENAME = "signing_key.pem"

logger = logging.getLogger(__name__)


class KeyConfigurationError(RuntimeError):
    """No usable signing key is configured."""


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=")
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": x,
        "kid": kid.decode(),
        "use": "sig",
        "alg": ALGORITHM,
    }


@dataclass(frozen=True)
class KeyRing:
    """The signing key and every public key to publish (the signing key's first)."""

    signing_key: Ed25519PrivateKey
    published: tuple[Ed25519PublicKey, ...] = ()

    @property
    def kid(self) -> str:
        return public_jwk(self.signing_key.public_key())["kid"]

    def jwks(self) -> dict[str, Any]:
        keys = [public_jwk(self.signing_key.public_key())]
        for key in self.published:
            jwk = public_jwk(key)
            if jwk["kid"] not in {k["kid"] for k in keys}:
                keys.append(jwk)
        return {"keys": keys}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.signing_key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def decode(self, token: str, **options: Any) -> dict[str, Any]:
        """Verify a token this service signed with any published key (raises jwt.PyJWTError)."""
        kid = jwt.get_unverified_header(token).get("kid")
        candidates = [self.signing_key.public_key(), *self.published]
        for key in candidates:
            if public_jwk(key)["kid"] == kid:
                claims: dict[str, Any] = jwt.decode(token, key, algorithms=[ALGORITHM], **options)
                return claims
        raise jwt.InvalidKeyError("unknown signing key")


def _load_private(pem: bytes, source: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyConfigurationError(f"{source}: the signing key must be an Ed25519 key")
    return key


def _load_public(path: Path) -> Ed25519PublicKey:
    pem = path.read_bytes()
    key: object
    if b"PRIVATE KEY" in pem:
        key = serialization.load_pem_private_key(pem, password=None)
        key = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    else:
        key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise KeyConfigurationError(f"{path}: published keys must be Ed25519 keys")
    return key


def _development_key(data_dir: Path) -> Ed25519PrivateKey:
    path = data_dir / DEV_KEY_FILENAME
    if path.exists():
        return _load_private(path.read_bytes(), str(path))
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created readable by this user only, atomically, so a concurrent start never reads half a key.
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return _load_private(path.read_bytes(), str(path))
    finally:
        tmp.unlink()
    logger.warning("generated a development signing key at %s", path)
    return key


def load_key_ring(settings: Settings) -> KeyRing:
    """The key ring the settings describe; in development, a generated key kept on disk."""
    if settings.signing_key_pem is not None:
        signing = _load_private(settings.signing_key_pem.get_secret_value().encode(), "PEM")
    elif settings.signing_key_file is not None:
        signing = _load_private(
            settings.signing_key_file.read_bytes(), str(settings.signing_key_file)
        )
    elif settings.environment == "development":
        signing = _development_key(settings.data_dir)
    else:
        raise KeyConfigurationError(
            "set AUTH_SIGNING_KEY_FILE or AUTH_SIGNING_KEY_PEM (an Ed25519 private key in PEM)"
        )
    published = tuple(_load_public(path) for path in settings.extra_public_key_files)
    return KeyRing(signing_key=signing, published=published)
