"""TLS of the connections to NATS and S3: one setting, one place that builds the client's SSL context.

``AVAFORGE_TLS_CA`` (a PEM file: one CA or a bundle) is what every process verifies its TLS peers with: the
gRPC probe (``services/common/probe.py``), the work queue (nats-py) and the artifact store (minio/urllib3).
Without it, TLS connections are verified against the system's trust store. The URL decides whether there is
TLS at all: ``tls://`` (NATS) and ``https://`` (S3) are TLS, ``nats://`` and ``http://`` are plaintext, chosen
explicitly; an S3 endpoint without a scheme is TLS (``S3Store.from_env``).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path

from avaforge.channel import read_ca

CA_ENV = "AVAFORGE_TLS_CA"

Ca = str | Path | bytes


def ca_from_env(env: Mapping[str, str] = os.environ) -> str | None:
    return env.get(CA_ENV) or None


def client_context(ca: Ca | None) -> ssl.SSLContext:
    """A client context that checks the server's certificate chain and name: against ``ca`` (a PEM path or
    the PEM itself), or the system's trust store when None; TLS 1.2 at least."""
    cadata = read_ca(ca).decode() if ca is not None else None
    ctx = ssl.create_default_context(cadata=cadata)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def split_url(url: str, tls_scheme: str, plain_scheme: str, default: str) -> tuple[str, bool]:
    """(``host:port``, TLS?) of ``url``: ``tls_scheme://`` is TLS, ``plain_scheme://`` plaintext, no scheme
    means ``default``; any other scheme is an error naming the URL."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = default, url
    if scheme not in (tls_scheme, plain_scheme) or not rest or "/" in rest.rstrip("/"):
        raise ValueError(f"{url!r}: expected {tls_scheme}://HOST:PORT (TLS) or {plain_scheme}://HOST:PORT")
    return rest.rstrip("/"), scheme == tls_scheme


def describe(exc: BaseException) -> str | None:
    """A line for a TLS failure (in ``exc`` or its causes), None when it is none."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        reason = getattr(seen, "reason", None)
        if isinstance(seen, ssl.SSLCertVerificationError):
            return (
                f"the server's TLS certificate was not accepted ({seen.verify_message}): "
                f"is {CA_ENV} the CA that signed it, and does it name this host?"
            )
        if isinstance(seen, ssl.SSLError):
            return f"TLS handshake failed ({seen.reason or seen}): is this a TLS port?"
        args = [a for a in seen.args if isinstance(a, BaseException)]  # urllib3 wraps the ssl error
        seen = reason if isinstance(reason, BaseException) else (seen.__cause__ or seen.__context__)
        seen = seen or (args[0] if args else None)
    return None
