"""`evolink doctor`: deploy checklist, health+json output and exit codes (0 pass, 1 warn, 2 fail)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import sqlite3
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from clock_helpers import HttpDateServer, Responders, synced_kernel, validate_health_json
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from evolink.doctor import EXIT, database_url, run_doctor

ROOT = Path(__file__).resolve().parents[2]


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class HttpsDateServer(HttpDateServer):
    def __init__(self, cert: Path, key: Path) -> None:
        super().__init__(0.0)
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ctx)
        return f"https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/"


@pytest.fixture
async def deploy(tmp_path: Path, responders: Responders) -> AsyncIterator[dict[str, Any]]:
    servers = [(await responders.start(skew=0.0))[0] for _ in range(3)]
    cert, key = _self_signed(tmp_path)
    https = HttpsDateServer(cert, key)
    url = await https.start()
    data = tmp_path / "data"
    data.mkdir()
    sqlite3.connect(data / "evolink.db").close()
    env = {"CLOCK_NTP_SERVERS": ",".join(str(s) for s in servers), "CLOCK_UPSTREAM_HTTP_URL": url,
           "CLOCK_NTP_PACKET_SPACING_SECONDS": "0", "CLOCK_NTP_TIMEOUT_SECONDS": "1.0",
           "CLOCK_HTTP_TIMEOUT_SECONDS": "3", "TZ": "UTC", "EVOLINK_DATA_DIR": str(data),
           "AUTHENTICATION_API_KEY": "0123456789ABCDEF", "DATABASE_PROVIDER": "sqlite"}
    yield {"env": env, "cert": cert, "https": https, "data": data}
    await https.close()


async def test_healthy_deploy_passes(deploy: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(deploy["cert"]))  # trust our local upstream
    doc = await run_doctor(deploy["env"], kernel_reader=synced_kernel)
    validate_health_json({k: v for k, v in doc.items() if k != "clock"})
    statuses = {k: v[0]["status"] for k, v in doc["checks"].items()}
    assert statuses == {"clock:offset": "pass", "clock:sync": "pass", "timezone:config": "pass",
                        "tzdata:version": "pass", "database:connection": "pass", "upstream:reachability": "pass",
                        "upstream:tls": "pass", "auth:apiKey": "pass", "storage:dataDir": "pass"}, doc.get("output")
    assert doc["status"] == "pass" and EXIT[doc["status"]] == 0
    assert doc["clock"]["verdict"] == "ok" and doc["clock"]["http"]["tls"] is True
    assert doc["checks"]["database:connection"][0]["componentId"] == "sqlite"


async def test_untrusted_tls_fails(deploy: dict[str, Any]) -> None:
    doc = await run_doctor(deploy["env"], kernel_reader=synced_kernel)
    tls = doc["checks"]["upstream:tls"][0]
    assert tls["status"] == "fail" and "TLS verification failed" in tls["output"]
    assert doc["status"] == "fail" and EXIT[doc["status"]] == 2


async def test_tz_typo_warns(deploy: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(deploy["cert"]))
    doc = await run_doctor({**deploy["env"], "TZ": "Europe/Berlni"}, kernel_reader=synced_kernel)
    tz = doc["checks"]["timezone:config"][0]
    assert tz["status"] == "warn" and "Europe/Berlni" in tz["output"]
    assert doc["status"] == "warn" and EXIT[doc["status"]] == 1


@pytest.mark.parametrize(("override", "key", "needle"), [
    ({"AUTHENTICATION_API_KEY": "BQYHJGJHJ"}, "auth:apiKey", "public default"),
    ({"CLOCK_SKEW_POLICY": "sometimes"}, "clock:config", "CLOCK_SKEW_POLICY"),
    ({"DATABASE_PROVIDER": "mysql"}, "database:connection", "DATABASE_PROVIDER"),
    ({"DATABASE_PROVIDER": "postgresql", "DATABASE_CONNECTION_URI": "postgresql://u:hunter2@127.0.0.1:1/x"},
     "database:connection", "Error"),
])
async def test_failures_exit_2(deploy: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                               override: dict[str, str], key: str, needle: str) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(deploy["cert"]))
    doc = await run_doctor({**deploy["env"], **override}, kernel_reader=synced_kernel)
    entry = doc["checks"][key][0]
    assert entry["status"] == "fail" and needle in entry["output"], entry
    assert "hunter2" not in json.dumps(doc)  # never print credentials
    assert EXIT[doc["status"]] == 2


async def test_unwritable_data_dir_fails(deploy: dict[str, Any], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    doc = await run_doctor({**deploy["env"], "EVOLINK_DATA_DIR": str(blocker / "data")},
                           kernel_reader=synced_kernel)
    assert doc["checks"]["storage:dataDir"][0]["status"] == "fail"


def test_database_url_normalisation(tmp_path: Path) -> None:
    assert database_url({"DATABASE_PROVIDER": "postgresql",
                         "DATABASE_CONNECTION_URI": "postgresql://u:p@db:5432/evo?schema=public&sslmode=require"}) \
        == "postgresql+asyncpg://u:p@db:5432/evo?sslmode=require"
    assert database_url({"EVOLINK_DATA_DIR": str(tmp_path)}) == f"sqlite+aiosqlite:///{tmp_path}/evolink.db"
    # The gateway ignores DATABASE_CONNECTION_URI under sqlite; the doctor checks the file it really opens.
    assert database_url({"EVOLINK_DATA_DIR": str(tmp_path), "DATABASE_PROVIDER": "sqlite",
                         "DATABASE_CONNECTION_URI": "postgresql://u:p@db:5432/evo"}) \
        == f"sqlite+aiosqlite:///{tmp_path}/evolink.db"
    with pytest.raises(ValueError, match="DATABASE_CONNECTION_URI"):
        database_url({"DATABASE_PROVIDER": "postgresql"})


async def test_cli_json_exit_code_matches_document(deploy: dict[str, Any]) -> None:
    env = {**os.environ, **deploy["env"], "TZ": "Europe/Berlni", "PYTHONPATH": str(ROOT / "src")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "evolink", "doctor", "--json", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    doc = json.loads(out)
    validate_health_json({k: v for k, v in doc.items() if k != "clock"})
    assert proc.returncode == EXIT[doc["status"]] and proc.returncode in (1, 2), err.decode()
    assert doc["checks"]["timezone:config"][0]["status"] == "warn"
    assert doc["clock"]["selection"]["agreeing"] == 3
