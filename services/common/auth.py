"""Who may call a gRPC port: TLS on the port, a bearer token per principal on every call.

Server (``runtime.serve``), from the environment:
  AVAFORGE_TLS_CERT, AVAFORGE_TLS_KEY   PEM certificate chain and key of this server
  AVAFORGE_TOKENS                       JSON file: sha256 hex of a token -> {"principal": ..., "role": ...}
Roles: ``user`` (its own jobs), ``admin`` (every job), ``service`` (the processes' own principal: probes and
service-to-service calls; sees every job, as the workers do). Only hashes are stored, so the tokens file (a
Secret in Kubernetes) does not give anyone a usable token. It is re-read when it changes on disk (a Secret
update reaches running pods without a restart).

Without TLS or without tokens a server is plaintext or anonymous (every caller is the admin ``local``), and
``serve`` then refuses any address but loopback: tests and embedding may, a reachable port may not.

Health checks need a credential too: the probe (``services.common.probe``) has the service token.

    python -m services.common.auth token PRINCIPAL ROLE --tokens FILE   # prints a new token, adds its hash
"""

from __future__ import annotations

import argparse
import contextvars
import hashlib
import ipaddress
import json
import logging
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

ROLES = ("user", "admin", "service")


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    @property
    def sees_all(self) -> bool:
        return self.role in ("admin", "service")

    def owns(self, owner: str | None) -> bool:
        """May this principal see a job owned by ``owner`` (None: a job from before owners were recorded)?"""
        return self.sees_all or (owner is not None and owner == self.name)


LOCAL = Principal("local", "admin")  # every caller of a server without tokens (loopback only)
_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("avaforge_principal")


def current() -> Principal:
    """The caller of the RPC being served (set by ``AuthInterceptor`` for the handler's task)."""
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("no principal: the RPC did not pass the auth interceptor") from None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class Tokens:
    """The tokens file, re-read when its modification time changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._table: dict[str, Principal] = {}
        self._load()

    def _load(self) -> None:
        st = self.path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        table = parse_tokens(json.loads(self.path.read_text()), str(self.path))
        self._table, self._stamp = table, stamp

    def lookup(self, token: str) -> Principal | None:
        try:
            self._load()
        except (OSError, ValueError) as exc:  # a half-written update: keep the last good table
            logging.getLogger("avaforge.auth").warning(f"tokens file {self.path}: {exc}")
        return self._table.get(token_hash(token))


def parse_tokens(raw: Any, where: str) -> dict[str, Principal]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping of sha256 hex -> {{principal, role}}")
    table = {}
    for digest, entry in raw.items():
        if len(digest) != 64 or not isinstance(entry, dict) or entry.get("role") not in ROLES:
            raise ValueError(f"{where}: entry {digest[:12]!r}: needs a sha256 hex key and a role in {ROLES}")
        table[digest.lower()] = Principal(str(entry["principal"]), entry["role"])
    return table


def add_token(tokens_file: str | Path, principal: str, role: str) -> str:
    """A new token for ``principal`` with ``role``; its hash is added to ``tokens_file`` (mode 0600)."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    path = Path(tokens_file)
    table = json.loads(path.read_text()) if path.exists() else {}
    token = new_token()
    table[token_hash(token)] = {"principal": principal, "role": role}
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    return token


@dataclass(frozen=True)
class ServerSecurity:
    """What a server needs to be reachable: its certificate and key (PEM), the tokens it accepts."""

    cert: bytes | None = None
    key: bytes | None = None
    tokens: Tokens | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServerSecurity:
        cert, key, tokens = (env.get(k) for k in ("AVAFORGE_TLS_CERT", "AVAFORGE_TLS_KEY", "AVAFORGE_TOKENS"))
        if bool(cert) != bool(key):
            raise ValueError("set both AVAFORGE_TLS_CERT and AVAFORGE_TLS_KEY, or neither")
        return cls(
            Path(cert).read_bytes() if cert else None,
            Path(key).read_bytes() if key else None,
            Tokens(tokens) if tokens else None,
        )

    @property
    def tls(self) -> bool:
        return self.cert is not None

    def credentials(self) -> grpc.ServerCredentials:
        assert self.cert is not None and self.key is not None
        return grpc.ssl_server_credentials([(self.key, self.cert)])


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(address: str, security: ServerSecurity) -> None:
    """A port reachable from elsewhere needs TLS and tokens."""
    if is_loopback(address):
        return
    missing = [n for n, ok in (("TLS", security.tls), ("tokens", security.tokens is not None)) if not ok]
    if missing:
        raise RuntimeError(
            f"refusing to serve on {address} without {' and '.join(missing)}: set AVAFORGE_TLS_CERT, "
            "AVAFORGE_TLS_KEY and AVAFORGE_TOKENS (or AVAFORGE_BIND=127.0.0.1)"
        )


_URL_SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")


def nats_url(env: Mapping[str, str] = os.environ) -> str:
    """``AVAFORGE_NATS_URL`` with this service's own NATS user (``AVAFORGE_NATS_USER`` and
    ``AVAFORGE_NATS_PASSWORD``, from its Secret in Kubernetes) put into it; nats-py reads them from the URL
    without unquoting, so they must be URL-safe (hex or token_urlsafe)."""
    url = env.get("AVAFORGE_NATS_URL", "nats://127.0.0.1:4222")
    user, password = env.get("AVAFORGE_NATS_USER"), env.get("AVAFORGE_NATS_PASSWORD")
    if not user:
        return url
    if not password or not set(user + password) <= _URL_SAFE:
        raise ValueError("AVAFORGE_NATS_USER and AVAFORGE_NATS_PASSWORD: both, of letters, digits, ._~- only")
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest}"


def bearer(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip()
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Every RPC (health and reflection included) needs a known bearer token; the handler then runs with
    ``current()`` set to its principal. Unknown or missing tokens answer UNAUTHENTICATED."""

    def __init__(self, tokens: Tokens | None) -> None:
        self.tokens = tokens
        self.log = logging.getLogger("avaforge.auth")

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        who: Principal | None = LOCAL
        if self.tokens is not None:
            token = bearer(handler_call_details.invocation_metadata)
            who = self.tokens.lookup(token) if token else None
            if who is None:
                why = "unknown bearer token" if token else "no bearer token (metadata authorization)"
                self.log.warning(why, extra={"rpc": handler_call_details.method, "code": "UNAUTHENTICATED"})
                return _denied(handler, why)
        return _as(handler, who)


def _as(handler, who: Principal):  # type: ignore[no-untyped-def]
    def unary(fn):  # type: ignore[no-untyped-def]
        async def call(request, context):  # type: ignore[no-untyped-def]
            _current.set(who)
            return await fn(request, context)

        return call

    def stream(fn):  # type: ignore[no-untyped-def]
        async def call(request, context):  # type: ignore[no-untyped-def]
            _current.set(who)
            async for item in fn(request, context):
                yield item

        return call

    return _replace(handler, unary, stream)


def _denied(handler, why: str):  # type: ignore[no-untyped-def]
    async def unary(request, context):  # type: ignore[no-untyped-def]
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, why)

    async def stream(request, context):  # type: ignore[no-untyped-def]
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, why)
        yield  # pragma: no cover  (abort raises; this makes the function a generator)

    return _replace(handler, lambda _: unary, lambda _: stream)


def _replace(handler, unary, stream):  # type: ignore[no-untyped-def]
    for kind, wrap in (
        ("unary_unary", unary),
        ("stream_unary", unary),
        ("unary_stream", stream),
        ("stream_stream", stream),
    ):
        fn = getattr(handler, kind)
        if fn is not None:
            return handler._replace(**{kind: wrap(fn)})
    return handler


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.common.auth")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("token", help="print a new token and add its hash to the tokens file")
    p.add_argument("principal")
    p.add_argument("role", choices=ROLES)
    p.add_argument("--tokens", required=True, help="the tokens file (created with mode 0600)")
    args = parser.parse_args(argv)
    print(add_token(args.tokens, args.principal, args.role))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
