"""A client's gRPC channel to an avaforge server: TLS verified against a CA, a bearer token on every call.

``ca`` is the PEM of the CA that signed the server's certificate (a path, or the PEM itself); without it the
channel is plaintext (servers accept that on loopback only). ``server_name`` checks the certificate for that
name instead of the target's host (the probe dials 127.0.0.1 and checks ``localhost``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc


def read_ca(ca: str | Path | bytes) -> bytes:
    if isinstance(ca, bytes):
        return ca
    if isinstance(ca, str) and ca.lstrip().startswith("-----BEGIN"):
        return ca.encode()
    path = Path(ca)
    if not path.is_file():
        raise FileNotFoundError(f"CA certificate {path} not found")
    return path.read_bytes()


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call's metadata."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=[*(details.metadata or ()), self.header])

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request_iterator)


def open_channel(
    target: str,
    ca: str | Path | bytes | None = None,
    token: str | None = None,
    server_name: str | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """A blocking channel to ``target``; ``close()`` it when done."""
    opts = list(options)
    if ca is None:
        channel = grpc.insecure_channel(target, options=opts)
    else:
        if server_name:
            opts.append(("grpc.ssl_target_name_override", server_name))
        creds = grpc.ssl_channel_credentials(root_certificates=read_ca(ca))
        channel = grpc.secure_channel(target, creds, options=opts)
    return grpc.intercept_channel(channel, _Bearer(token)) if token else channel
