import base64
import json
import os
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from pydantic import SecretStr

from auth.keys import DEV_KEY_FILENAME, KeyConfigurationError, KeyRing, load_key_ring, public_jwk
from auth.settings import Settings


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_kid_is_the_rfc7638_thumbprint() -> None:
    # RFC 8037 appendix A.3: the thumbprint of its example Ed25519 public key.
    raw = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    key = Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    ).public_key()
    jwk = public_jwk(key)
    assert base64.urlsafe_b64decode(jwk["x"] + "=") == raw
    assert jwk["kid"] == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_development_generates_a_key_once_and_keeps_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "auth")
    first = load_key_ring(settings)
    path = tmp_path / "auth" / DEV_KEY_FILENAME
    assert path.exists()
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_key_ring(settings).kid == first.kid


def test_production_needs_a_configured_key(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigurationError):
        load_key_ring(Settings(environment="production", data_dir=tmp_path))
    assert not any(tmp_path.iterdir())


def test_an_empty_key_variable_means_development_generates_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compose's development env file passes AUTH_SIGNING_KEY_PEM= (compose.yaml needs it set)."""
    monkeypatch.setenv("AUTH_SIGNING_KEY_PEM", "")
    settings = Settings(data_dir=tmp_path / "auth")

    assert settings.signing_key_pem is None
    load_key_ring(settings)
    assert (tmp_path / "auth" / DEV_KEY_FILENAME).is_file()


def test_the_key_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    (tmp_path / "key.pem").write_bytes(_pem(key))
    expected = public_jwk(key.public_key())["kid"]
    from_file = Settings(environment="production", signing_key_file=tmp_path / "key.pem")
    from_env = Settings(environment="production", signing_key_pem=SecretStr(_pem(key).decode()))
    assert load_key_ring(from_file).kid == expected
    assert load_key_ring(from_env).kid == expected


def test_an_rsa_key_is_refused(tmp_path: Path) -> None:
    rsa = generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyConfigurationError):
        load_key_ring(Settings(signing_key_pem=SecretStr(pem.decode())))


def test_extra_keys_are_published_and_accepted(tmp_path: Path) -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    (tmp_path / "old.pem").write_bytes(
        old.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    ring = load_key_ring(
        Settings(
            signing_key_pem=SecretStr(_pem(new).decode()),
            extra_public_key_files=[tmp_path / "old.pem"],
        )
    )
    jwks = ring.jwks()
    assert [k["kid"] for k in jwks["keys"]] == [
        public_jwk(new.public_key())["kid"],
        public_jwk(old.public_key())["kid"],
    ]
    assert all("d" not in k for k in jwks["keys"])
    old_ring = KeyRing(signing_key=old)
    token = old_ring.sign({"sub": "1"})
    assert ring.decode(token) == {"sub": "1"}
    with pytest.raises(jwt.InvalidKeyError):
        KeyRing(signing_key=Ed25519PrivateKey.generate()).decode(token)
    assert json.loads(json.dumps(jwks)) == jwks
