"""A local CA, a server certificate and bearer tokens for ``make up`` and the tests (PyPI ``cryptography``).

    python -m devstack.certs DIR [NAME...] [--server FILE=NAME,NAME...]...

makes ``DIR/ca.crt``, ``DIR/tls.crt`` and ``DIR/tls.key`` for NAME... (default localhost, 127.0.0.1), and
for each ``--server`` ``DIR/FILE.crt`` and ``DIR/FILE.key`` for its names, signed by the same CA (NATS and
MinIO in Kubernetes: every client checks them with the one ``ca.crt``). The CA's key is not kept. The command
makes no tokens (``python -m services.common.auth token`` does). In Kubernetes the certificates are the
operator's (Secrets; README "Run on Kubernetes"): from their CA, cert-manager, or this command.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devstack.servers import ServerTls
from services.common.auth import add_token

LOCAL_NAMES = ("localhost", "127.0.0.1")
# make up's principals: one user and one admin for people, the service principal for probes
STACK_PRINCIPALS = {"user": "user", "admin": "admin", "service": "service"}


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    signer: ec.EllipticCurvePrivateKey,
    days: int,
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # clock skew between processes
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def make_ca(common_name: str = "avaforge local CA", days: int = 365) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) of a self-signed CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _cert(common_name, key, None, key, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def make_server_cert(
    ca_key_pem: bytes, ca_cert_pem: bytes, names: Sequence[str], days: int = 365
) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) for a server reachable as ``names`` (DNS names or IP addresses)."""
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _cert(names[0], key, ca_cert.subject, ca_key, days)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes | str, private: bool) -> Path:
    path.touch(mode=0o600 if private else 0o644, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    if private:
        path.chmod(0o600)
    return path


@dataclass(frozen=True)
class Credentials:
    """Files of one local deployment: ``ca`` (clients verify with it), ``cert``/``key`` (every server),
    ``tokens`` (hashes, for the servers) and one token per principal (``<name>.token``, mode 0600)."""

    dir: Path
    tokens: dict[str, str] = field(default_factory=dict)  # principal -> token

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.dir / "tls.crt"

    @property
    def key(self) -> Path:
        return self.dir / "tls.key"

    @property
    def tokens_file(self) -> Path:
        return self.dir / "tokens.json"

    @property
    def server_tls(self) -> ServerTls:
        """The certificate and key for nats-server and the S3 server of the stack."""
        return ServerTls(self.cert, self.key)

    def token_file(self, principal: str) -> Path:
        return self.dir / f"{principal}.token"

    def server_env(self, service_principal: str = "service") -> dict[str, str]:
        """What every process of the stack is started with: its TLS, the tokens it accepts, and the service
        principal's token and CA for the calls it makes (the probe)."""
        return {
            "AVAFORGE_TLS_CERT": str(self.cert),
            "AVAFORGE_TLS_KEY": str(self.key),
            "AVAFORGE_TOKENS": str(self.tokens_file),
            "AVAFORGE_TLS_CA": str(self.ca),
            "AVAFORGE_TOKEN_FILE": str(self.token_file(service_principal)),
        }


def make_credentials(
    directory: Path,
    principals: Mapping[str, str] = STACK_PRINCIPALS,
    names: Sequence[str] = LOCAL_NAMES,
    servers: Mapping[str, Sequence[str]] | None = None,
) -> Credentials:
    """A CA, a server certificate for ``names`` and a token per principal (name -> role) in ``directory``;
    ``servers`` (file stem -> names): more certificates from the same CA, ``<stem>.crt``/``<stem>.key``."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_key, ca_cert = make_ca()
    creds = Credentials(directory)
    _write(creds.ca, ca_cert, False)
    for stem, server_names in {"tls": names, **(servers or {})}.items():
        key, cert = make_server_cert(ca_key, ca_cert, server_names)
        _write(directory / f"{stem}.crt", cert + ca_cert, False)  # the chain up to the CA
        _write(directory / f"{stem}.key", key, True)
    creds.tokens_file.unlink(missing_ok=True)
    for name, role in principals.items():
        creds.tokens[name] = add_token(creds.tokens_file, name, role)
        _write(creds.token_file(name), creds.tokens[name] + "\n", True)
    return creds  # the CA's key is not kept: nothing else is ever signed with it


def load_credentials(directory: Path) -> Credentials | None:
    """The credentials ``make_credentials`` left in ``directory`` (None if there are none)."""
    creds = Credentials(directory)
    if not (creds.ca.exists() and creds.key.exists() and creds.tokens_file.exists()):
        return None
    for token in directory.glob("*.token"):
        creds.tokens[token.stem] = token.read_text().strip()
    return creds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.certs", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("names", nargs="*", default=list(LOCAL_NAMES), help="names of tls.crt")
    parser.add_argument(
        "--server", action="append", default=[], metavar="FILE=NAME,NAME", help="another certificate"
    )
    args = parser.parse_args(argv)
    servers = {}
    for spec in args.server:
        stem, _, names = spec.partition("=")
        if not stem.isidentifier() or stem in ("ca", "tls") or not names.strip(","):
            parser.error(f"--server {spec}: expected FILE=NAME,NAME (FILE: a name other than ca and tls)")
        servers[stem] = [n for n in names.split(",") if n]
    made = make_credentials(args.dir, {}, args.names, servers)
    print(made.ca, made.cert, made.key, *(f"{args.dir / s}.crt {args.dir / s}.key" for s in servers))
    return os.EX_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
