"""How the chat service authenticates callers: locally against the auth service's JWKS, or
remotely through the auth service's Access API.

Local mode (the default) verifies each access token with the public keys that
:class:`JwksCache` fetches from ``AuthService.GetJwks``; it keeps working while the auth
service is down. Remote mode asks ``AccessService.Check`` and caches each decision for a
few seconds; it sees revocations (a deleted user) within that time, at the price of a
call to the auth service per token, method and cache period, and of depending on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import grpc
import grpc.aio
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from google.protobuf import json_format

from meshchat.auth.v1 import access_pb2, access_pb2_grpc, auth_pb2, auth_pb2_grpc
from meshchat_chat.domain import KeySet
from meshchat_runtime.errors import DomainError, PermissionDenied, Unauthenticated, Unavailable
from meshchat_runtime.identity import Principal, Role
from meshchat_runtime.timestamps import utc_now
from meshchat_runtime.tokens import TokenVerifier, UnknownKeyId, public_key_from_jwk

__all__ = ["JwksCache", "KeyArchive", "LocalAuthenticator", "RemoteAuthenticator"]

log = logging.getLogger(__name__)

# A failed fetch is retried after RETRY_FIRST seconds, doubling up to RETRY_MOST (and never
# later than the refresh interval).
RETRY_FIRST = 0.5
RETRY_MOST = 10.0


class KeyArchive(Protocol):
    """Where the last good key set is kept across restarts (the chat service's own store)."""

    async def save_key_set(self, key_set: KeySet) -> None:
        """Keep the key set, unless the one kept was fetched later."""
        ...

    async def load_key_set(self) -> KeySet | None:
        """The key set kept last, or None."""
        ...


class JwksCache:
    """The auth service's public keys by ``kid``, fetched over gRPC and refreshed.

    Keys are refreshed every ``refresh_interval`` and, when a token names an unknown
    ``kid``, again, at most once per ``min_refetch_interval``; a failed fetch is retried
    sooner, with backoff. When a fetch fails the cached keys stay in use for up to
    ``max_age`` after the last successful fetch, so tokens keep being accepted while the auth
    service is down. Each fetched set is kept in ``archive``, and a replica that starts
    while the auth service is down begins with the kept set (while within ``max_age``).
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        archive: KeyArchive | None = None,
        refresh_interval: float = 300.0,
        min_refetch_interval: float = 10.0,
        max_age: float = 86400.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._stub = auth_pb2_grpc.AuthServiceStub(channel)
        self._archive = archive
        self._wall_clock = wall_clock
        self._refresh_interval = refresh_interval
        self._min_refetch_interval = min_refetch_interval
        self._max_age = max_age
        self._timeout = timeout
        self._clock = clock
        self._keys: dict[str, EllipticCurvePublicKey] = {}
        self._created_at = clock()
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._refetched_at: float | None = None
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def public_key(self, kid: str) -> EllipticCurvePublicKey | None:
        """The key with this id while the cached set is fresh enough, else None."""
        if not self.usable:
            return None
        return self._keys.get(kid)

    @property
    def max_age(self) -> float:
        """How long fetched keys stay in use when no fetch succeeds."""
        return self._max_age

    def age(self) -> float:
        """Seconds since the keys were last fetched; since this cache was made when never."""
        return self._clock() - (self._fetched_at or self._created_at)

    @property
    def usable(self) -> bool:
        """Whether keys were fetched within ``max_age``."""
        return self._fetched_at is not None and self._clock() - self._fetched_at <= self._max_age

    async def probe(self) -> bool:
        """Whether tokens can be verified: a health dependency."""
        return self.usable

    async def start(self) -> None:
        """Begin with the kept key set, if any, then fetch the keys now and every
        ``refresh_interval`` in the background; while no key set is usable, tokens are
        refused (UNAVAILABLE) and health says NOT_SERVING."""
        await self._restore()
        self._task = asyncio.create_task(self._refresh_periodically(), name="jwks refresh")

    async def stop(self) -> None:
        """Stop refreshing."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _refresh_periodically(self) -> None:
        retry = RETRY_FIRST
        while not self._stopping.is_set():
            if await self.refresh():
                wait, retry = self._refresh_interval, RETRY_FIRST
            else:
                if self._fetched_at is None:
                    await self._restore()  # the store may not have been ready at start
                wait, retry = min(retry, self._refresh_interval), min(retry * 2, RETRY_MOST)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)

    async def _restore(self) -> None:
        """Use the kept key set when no keys were fetched yet and it is within ``max_age``."""
        if self._archive is None or self._fetched_at is not None:
            return
        try:
            kept = await self._archive.load_key_set()
        except DomainError as exc:
            log.warning("cannot read the kept keys: %s", exc.message)
            return
        if kept is None:
            return
        age = (self._wall_clock() - kept.fetched_at).total_seconds()
        if age > self._max_age:
            log.warning("the kept keys are too old to use", extra={"age_seconds": age})
            return
        keys = self._parse(list(json_format.Parse(kept.keys, auth_pb2.Jwks()).keys))
        self._keys = keys
        self._fetched_at = self._clock() - max(age, 0.0)
        log.info(
            "using the keys kept from the last fetch",
            extra={"kids": sorted(keys), "fetched_at": kept.fetched_at.isoformat()},
        )

    async def _keep(self, jwks: auth_pb2.Jwks) -> None:
        if self._archive is None:
            return
        document = json_format.MessageToJson(jwks, indent=None)
        try:
            await self._archive.save_key_set(KeySet(document, self._wall_clock()))
        except DomainError as exc:
            log.warning("cannot keep the fetched keys: %s", exc.message)

    async def refresh_for_unknown_kid(self) -> bool:
        """Fetch again because a token named an unknown key, unless such a fetch was made
        within ``min_refetch_interval``. True when the key set was fetched just now (by
        this call or by one it waited for)."""
        if not self.usable and self._lock.locked():
            # No keys, and a fetch is under way (the auth service may well be down): the
            # caller is told UNAVAILABLE at once rather than made to wait for it.
            return False
        attempted = self._attempted_at
        async with self._lock:
            if self._attempted_at != attempted:
                return self._fetched_at == self._attempted_at
            last = self._refetched_at
            if last is not None and self._clock() - last < self._min_refetch_interval:
                return False
            self._refetched_at = self._clock()
            # With keys in hand an unknown kid means a rotation, and the auth service is
            # likely up (perhaps just restarted: wait for the channel); without any, it is
            # likely down, and the background refresh is the one to wait for it.
            return await self._fetch(wait_for_ready=self.usable)

    async def refresh(self) -> bool:
        """Fetch the key set now; False (keys kept) when the auth service cannot be reached."""
        async with self._lock:
            return await self._fetch()

    async def _fetch(self, *, wait_for_ready: bool = True) -> bool:
        """Fetch the key set; with ``wait_for_ready``, wait (within the timeout) for a channel
        that is still reconnecting after an outage."""
        now = self._clock()
        self._attempted_at = now
        try:
            jwks = await self._stub.GetJwks(
                auth_pb2.GetJwksRequest(), timeout=self._timeout, wait_for_ready=wait_for_ready
            )
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "cannot fetch the auth service's keys; keeping the cached ones",
                extra={"code": exc.code().name, "details": exc.details(), "keys": len(self._keys)},
            )
            return False
        keys = self._parse(list(jwks.keys))
        self._keys = keys
        self._fetched_at = now
        self._attempted_at = now
        log.info("fetched the auth service's keys", extra={"kids": sorted(keys)})
        await self._keep(jwks)
        return True

    @staticmethod
    def _parse(jwks: list[auth_pb2.Jwk]) -> dict[str, EllipticCurvePublicKey]:
        keys: dict[str, EllipticCurvePublicKey] = {}
        for jwk in jwks:
            try:
                keys[jwk.kid] = public_key_from_jwk(json_format.MessageToDict(jwk))
            except ValueError as exc:
                log.warning("ignoring a key of the JWKS", extra={"kid": jwk.kid, "error": str(exc)})
        return keys


class LocalAuthenticator:
    """Verifies access tokens in-process: signature, ``exp``, ``iss``, ``aud`` and ``typ``."""

    def __init__(self, verifier: TokenVerifier, jwks: JwksCache) -> None:
        self._verifier = verifier
        self._jwks = jwks

    async def authenticate(self, token: str, method: str) -> Principal:
        """The token's principal; Unauthenticated when invalid, Unavailable when no keys
        could ever be fetched."""
        try:
            return self._verifier.verify(token)
        except UnknownKeyId:
            if await self._jwks.refresh_for_unknown_kid():
                return self._verifier.verify(token)
            if not self._jwks.usable:
                raise Unavailable(
                    "cannot verify access tokens: the auth service's keys are not available"
                ) from None
            raise


@dataclass(frozen=True, slots=True)
class _Decision:
    principal: Principal | None
    error: DomainError | None
    until: float


class RemoteAuthenticator:
    """Asks the auth service's ``AccessService.Check`` and caches each answer for ``ttl``
    seconds (never past the token's expiry)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        ttl: float = 5.0,
        timeout: float = 2.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stub = access_pb2_grpc.AccessServiceStub(channel)
        self._ttl = ttl
        self._timeout = timeout
        self._cache_size = cache_size
        self._clock = clock
        self._cache: OrderedDict[tuple[str, str], _Decision] = OrderedDict()

    async def authenticate(self, token: str, method: str) -> Principal:
        """The caller's principal when the auth service allows ``method``; its refusal as
        Unauthenticated or PermissionDenied; Unavailable when it cannot be asked."""
        key = (token, method)
        now = self._clock()
        decision = self._cache.get(key)
        if decision is None or decision.until <= now:
            decision = await self._check(token, method, now)
            self._cache[key] = decision
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        if decision.error is not None:
            raise decision.error
        assert decision.principal is not None
        return decision.principal

    async def _check(self, token: str, method: str, now: float) -> _Decision:
        try:
            answer = await self._stub.Check(
                access_pb2.CheckRequest(endpoint=method),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                return _Decision(None, Unauthenticated(exc.details() or ""), now + self._ttl)
            if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
                return _Decision(None, PermissionDenied(exc.details() or ""), now + self._ttl)
            raise Unavailable(f"the auth service cannot check access ({exc.code().name})") from None
        try:
            role = Role(answer.role)
        except ValueError:
            return _Decision(None, Unauthenticated("the token has no known role"), now + self._ttl)
        principal = Principal(
            user_id=answer.user_id,
            username=answer.username,
            role=role,
            expires_at=float(answer.expires_at),
        )
        return _Decision(principal, None, min(now + self._ttl, principal.expires_at))
