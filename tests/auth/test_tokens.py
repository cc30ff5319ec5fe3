"""Access tokens: what is accepted, what is refused, and key rotation."""

from __future__ import annotations

import base64
import json
import shutil
import uuid
from pathlib import Path

import grpc
import jwt
import pytest

from meshchat.auth.v1 import access_pb2, auth_pb2, users_pb2
from meshchat_auth.keys import KeyRing, generate_key_file
from tests.support.auth_stubs import Stubs
from tests.support.passwords import PASSWORD
from tests.support.rpc import status_of
from tests.support.stack import RunningAuth, bearer, register_and_login, start_auth
from tests.support.tokens import mint_access_token


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_access_token_header_and_claims(stubs: Stubs, auth: RunningAuth) -> None:
    pair = await register_and_login(stubs.channel, "alice")
    header = jwt.get_unverified_header(pair.access_token)
    assert header["alg"] == "ES256"
    assert header["typ"] == "at+jwt"
    assert header["kid"] == auth.app.keys.signing_key.kid
    claims = jwt.decode(pair.access_token, options={"verify_signature": False})
    assert set(claims) == {"sub", "username", "role", "iss", "aud", "iat", "exp", "jti", "sid"}
    # iat to the microsecond, exp in whole seconds.
    assert 299 < claims["exp"] - claims["iat"] <= 300
    # sid names the login (the refresh family): a password change keeps this one alone.
    assert str(uuid.UUID(claims["sid"])) == claims["sid"]
    assert (claims["iss"], claims["aud"], claims["role"]) == ("meshchat-auth", "meshchat", "USER")


async def test_jwks_publishes_the_public_key_and_it_verifies_tokens(stubs: Stubs) -> None:
    pair = await register_and_login(stubs.channel, "alice")
    jwks = await stubs.auth.GetJwks(auth_pb2.GetJwksRequest())
    assert len(jwks.keys) == 1
    key = jwks.keys[0]
    assert (key.kty, key.crv, key.alg, key.use) == ("EC", "P-256", "ES256", "sig")
    public = jwt.PyJWK({"kty": key.kty, "crv": key.crv, "x": key.x, "y": key.y}, algorithm="ES256")
    claims = jwt.decode(pair.access_token, public.key, algorithms=["ES256"], audience="meshchat")
    assert claims["username"] == "alice"


def forged_tokens(keys_dir: Path, user_id: str, public_pem: bytes, valid: str) -> dict[str, str]:
    """Every kind of bad token the service must refuse, by name."""
    header, payload, _sig = valid.split(".")
    claims = jwt.decode(valid, options={"verify_signature": False})
    return {
        "malformed": "not.a.jwt",
        "garbage": "abc",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'at+jwt', 'kid': 'x'})}.{payload}.",
        "HS256 signed with the public key": _hs256(
            claims, public_pem, jwt.get_unverified_header(valid)["kid"]
        ),
        "wrong audience": mint_access_token(
            keys_dir, user_id=user_id, username="alice", audience="other"
        ),
        "wrong issuer": mint_access_token(
            keys_dir, user_id=user_id, username="alice", issuer="evil"
        ),
        "expired": mint_access_token(keys_dir, user_id=user_id, username="alice", expires_in=-60),
        "wrong typ": mint_access_token(keys_dir, user_id=user_id, username="alice", typ="JWT"),
        "unknown kid": mint_access_token(keys_dir, user_id=user_id, username="alice", kid="nope"),
        "tampered payload": f"{header}.{_b64({**claims, 'role': 'ADMIN'})}.{_sig}",
        "unknown role": mint_access_token(keys_dir, user_id=user_id, username="alice", role="ROOT"),
    }


def _hs256(claims: dict[str, object], secret: bytes, kid: str) -> str:
    # PyJWT refuses PEM keys as HMAC secrets, as it should; an attacker signs by hand.
    import hashlib
    import hmac

    head = _b64({"alg": "HS256", "typ": "at+jwt", "kid": kid})
    body = _b64(claims)
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


async def test_bad_tokens_are_unauthenticated_everywhere(stubs: Stubs, auth: RunningAuth) -> None:
    from cryptography.hazmat.primitives import serialization

    pair = await register_and_login(stubs.channel, "alice")
    public_pem = auth.app.keys.signing_key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tokens = forged_tokens(auth.config.keys_dir, pair.user.id, public_pem, pair.access_token)
    tokens["a refresh token"] = pair.refresh_token
    for name, token in tokens.items():
        get = stubs.users.GetUser(users_pb2.GetUserRequest(id=pair.user.id), metadata=bearer(token))
        assert (await status_of(get))[0] == grpc.StatusCode.UNAUTHENTICATED, name
        check = stubs.access.Check(
            access_pb2.CheckRequest(endpoint="/meshchat.chat.v1.ChatService/SendMessage"),
            metadata=bearer(token),
        )
        assert (await status_of(check))[0] == grpc.StatusCode.UNAUTHENTICATED, name
    # The genuine token still works: the refusals were about the tokens.
    await stubs.users.GetUser(
        users_pb2.GetUserRequest(id=pair.user.id), metadata=bearer(pair.access_token)
    )


@pytest.mark.parametrize(
    "metadata", [(("authorization", "Basic abc"),), (("authorization", "Bearer "),)]
)
async def test_authorization_metadata_must_be_a_bearer_token(
    stubs: Stubs, metadata: tuple[tuple[str, str]]
) -> None:
    code, _ = await status_of(
        stubs.users.GetUser(users_pb2.GetUserRequest(username="x"), metadata=metadata)
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_key_rotation_keeps_old_tokens_valid(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    first = await start_auth(tmp_path, keys_dir=keys_dir)
    try:
        async with first.channel() as channel:
            old = await register_and_login(channel, "alice")
        old_kid = first.app.keys.signing_key.kid
    finally:
        await first.stop()
    shutil.copy(generate_key_file(tmp_path / "spare"), keys_dir / "zz-newer.pem")
    second = await start_auth(tmp_path, keys_dir=keys_dir)
    try:
        async with second.channel() as channel:
            stubs = Stubs(channel)
            jwks = await stubs.auth.GetJwks(auth_pb2.GetJwksRequest())
            kids = [k.kid for k in jwks.keys]
            assert len(kids) == 2
            assert old_kid in kids
            fresh = await stubs.auth.Login(
                auth_pb2.LoginRequest(username="alice", password=PASSWORD)
            )
            assert jwt.get_unverified_header(fresh.access_token)["kid"] != old_kid
            assert jwt.get_unverified_header(fresh.access_token)["kid"] == kids[0]
            for token in (old.access_token, fresh.access_token):
                await stubs.users.GetUser(
                    users_pb2.GetUserRequest(username="alice"), metadata=bearer(token)
                )
    finally:
        await second.stop()
    # Once the old key is removed, its tokens stop working.
    (keys_dir / f"{old_kid}.pem").unlink(missing_ok=True)
    for path in keys_dir.glob("*.pem"):
        if KeyRing.load(keys_dir, generate=False).signing_key.source != path:
            path.unlink()
    third = await start_auth(tmp_path, keys_dir=keys_dir)
    try:
        async with third.channel() as channel:
            code, _ = await status_of(
                Stubs(channel).users.GetUser(
                    users_pb2.GetUserRequest(username="alice"), metadata=bearer(old.access_token)
                )
            )
            assert code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await third.stop()


async def test_generated_key_file_is_private(auth: RunningAuth) -> None:
    key_files = list(auth.config.keys_dir.glob("*.pem"))
    assert len(key_files) == 1
    assert key_files[0].stat().st_mode & 0o777 == 0o600
    assert auth.config.keys_dir.stat().st_mode & 0o077 == 0
