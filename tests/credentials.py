"""The one test CA, server certificate and tokens every test that starts a server uses (made once per
session with ``devstack.certs``, removed at exit): servers get ``security()``, clients ``channel()`` or
``client()`` as one of the principals below."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

import grpc

from devstack.certs import Credentials, make_credentials

PRINCIPALS = {"alice": "user", "bob": "user", "admin": "admin", "service": "service"}


@cache
def credentials() -> Credentials:
    root = Path(tempfile.mkdtemp(prefix="avaforge-creds-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return make_credentials(root / "creds", PRINCIPALS)


def security():  # type: ignore[no-untyped-def]
    """The servers' side: TLS with the test certificate, the test tokens."""
    from services.common.auth import ServerSecurity

    return ServerSecurity.from_env(credentials().server_env())


def server_env() -> dict[str, str]:
    """Environment of a server process (and its probe) with the test TLS and tokens."""
    return credentials().server_env()


def channel(port: int, principal: str = "service") -> grpc.Channel:
    """A TLS channel to 127.0.0.1:``port`` carrying ``principal``'s token."""
    from avaforge.channel import open_channel

    c = credentials()
    return open_channel(f"127.0.0.1:{port}", c.ca, c.tokens[principal], server_name="localhost")


def client(port: int, principal: str = "alice", timeout_s: float = 60):  # type: ignore[no-untyped-def]
    """A ``GatewayClient`` over TLS as ``principal`` (the certificate names localhost)."""
    from avaforge.client import GatewayClient

    c = credentials()
    return GatewayClient(f"localhost:{port}", timeout_s, ca=c.ca, token=c.tokens[principal])
