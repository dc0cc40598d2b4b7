"""Self-signed TLS certificate for ``wss://``, generated on demand (and kept in the data dir)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _generate(host: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evolink sandbox")])
    alt: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName("web.whatsapp.com")]
    for ip in {host, "127.0.0.1", "::1"}:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            alt.append(x509.DNSName(ip))
    # Host time, not sandbox time: the TLS peer checks this against its own clock, and a shifted
    # sandbox clock must not break TLS (a real server's TLS cert is valid for months either way).
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=2))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_ssl_context(host: str, data_dir: Path | None) -> ssl.SSLContext:
    """A server context with a self-signed cert; reused from ``data_dir`` when present."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if data_dir is not None:
        cert_path, key_path = data_dir / "tls-cert.pem", data_dir / "tls-key.pem"
        if not (cert_path.exists() and key_path.exists()):
            cert_pem, key_pem = _generate(host)
            key_path.write_bytes(key_pem)
            key_path.chmod(0o600)
            cert_path.write_bytes(cert_pem)
        ctx.load_cert_chain(cert_path, key_path)
        return ctx
    cert_pem, key_pem = _generate(host)
    # ssl can only load from files; keep them only for the duration of the load.
    with tempfile.TemporaryDirectory(prefix="evolink-sandbox-tls-") as tmp:
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        key_file.write_bytes(key_pem)
        cert_file.write_bytes(cert_pem)
        ctx.load_cert_chain(cert_file, key_file)
    return ctx
