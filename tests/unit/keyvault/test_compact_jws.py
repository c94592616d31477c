"""CompactJws: signatures checked against PyJWT-made tokens; algorithm confusion and tampering refused."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sidecars.common.jose import CompactJws, InvalidJws, b64url_encode, check_lifetime

RSA_KEY = rsa.generate_private_key(65537, 2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC384 = ec.generate_private_key(ec.SECP384R1())
ALL = ("RS256", "RS384", "PS256", "ES256", "ES384")


@pytest.mark.parametrize("alg, key", [("RS256", RSA_KEY), ("RS384", RSA_KEY), ("PS256", RSA_KEY),
                                      ("ES256", EC_KEY), ("ES384", EC384)])
def test_pyjwt_tokens_verify(alg, key):
    jws = CompactJws.parse(jwt.encode({"a": 1}, key, algorithm=alg))
    assert jws.verify(key.public_key(), ALL) and jws.claims() == {"a": 1}
    assert not jws.verify(key.public_key(), tuple(a for a in ALL if a != alg))


def test_confusion_and_tampering_refused():
    token = jwt.encode({"a": 1}, RSA_KEY, algorithm="RS256")
    header, payload, signature = token.split(".")
    tampered = CompactJws.parse(".".join([header, b64url_encode(b'{"a":2}'), signature]))
    assert not tampered.verify(RSA_KEY.public_key(), ALL)
    assert not CompactJws.parse(token).verify(EC_KEY.public_key(), ALL)
    assert not CompactJws.parse(token).verify(rsa.generate_private_key(65537, 2048).public_key(), ALL)
    unsigned = ".".join([b64url_encode(b'{"alg":"none"}'), payload, ""])
    assert not CompactJws.parse(unsigned).verify(RSA_KEY.public_key(), ALL)
    hmac = jwt.encode({"a": 1}, "secret-key-that-is-long-enough-32b", algorithm="HS256")
    assert not CompactJws.parse(hmac).verify(RSA_KEY.public_key(), ALL)


@pytest.mark.parametrize("text", ["a.b", "a.b.c.d", "a.b!.c", "e30.e30", 7])
def test_malformed_refused(text):
    with pytest.raises(InvalidJws):
        CompactJws.parse(text).claims()


def test_lifetime():
    now = time.time()
    assert check_lifetime({"exp": now + 10}, leeway=0) is None
    assert check_lifetime({"exp": now - 100}, leeway=30) == "has expired"
    assert check_lifetime({"exp": now - 10}, leeway=30) is None
    assert check_lifetime({"exp": now + 100, "nbf": now + 100}, leeway=30) == "is not valid yet (nbf)"
    assert check_lifetime({}, leeway=30) == "has no expiry (exp)"
    assert check_lifetime({"exp": True}, leeway=30) == "has no expiry (exp)"
