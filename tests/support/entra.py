"""A tiny local Microsoft Entra ID for azure-identity: OpenID discovery, the client-credentials token
endpoint and an App Service managed-identity endpoint, over HTTPS with a self-signed certificate.

The tokens are unsigned-looking JWTs (HS256 with a throwaway key) that Azurite's ``--oauth basic``
accepts: it checks issuer (``https://sts.windows.net/<tenant>/``), audience
(``https://storage.azure.com``) and lifetime, not the signature. Every token request is recorded in
``TokenServer.requests`` so tests can check who asked for what.

Clients trust the certificate through ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE``: the `entra` fixture
sets both for its test (the same certificate serves Azurite, see `tests.support.azurite.azurite_tls`)
and clears the azure-identity environment variables a developer's shell may hold. Test modules
import the fixtures by name::

    from tests.support.entra import entra, tls  # noqa: F401 - fixtures, used by name
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

STORAGE_AUDIENCE = "https://storage.azure.com"
MSI_PATH = "/msi/token"
TENANT, CLIENT_ID, CLIENT_SECRET = "tenant-0001", "client-0001", "entra-client-secret-do-not-print-42"
IDENTITY_VARIABLES = (
    "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE",
    "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT",
)  # fmt: skip


def self_signed(directory: Path) -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` for 127.0.0.1 / localhost (its own CA) into `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def access_token(tenant: str, client_id: str, audience: str = STORAGE_AUDIENCE, lifetime: int = 3600) -> str:
    """A JWT shaped like Entra's for `audience`."""
    now = int(time.time())
    claims = {"aud": audience, "iss": f"https://sts.windows.net/{tenant}/", "iat": now - 60, "nbf": now - 60,
              "exp": now + lifetime, "tid": tenant, "appid": client_id, "oid": client_id, "ver": "1.0"}  # fmt: skip
    signing_input = (
        _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + _b64url(json.dumps(claims).encode())
    )
    signature = hmac.new(b"local-test-key", signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64url(signature)


@dataclass
class TokenServer:
    """Entra for one tenant and one client (id + secret), and a managed identity behind a header."""

    cert: Path
    key: Path
    tenant: str
    client_id: str
    client_secret: str
    identity_header: str = "local-identity-header"
    token_lifetime: int = 3600  # what the JWT says (negative: already expired); expires_in says an hour
    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def msi_endpoint(self) -> str:
        return self.url + MSI_PATH

    def start(self) -> TokenServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def openid_configuration(self, tenant: str) -> dict[str, str]:
        base = f"{self.url}/{tenant}"
        return {"issuer": f"{base}/v2.0", "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token"}  # fmt: skip

    def client_credentials(self, tenant: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.requests.append({"flow": "client_credentials", "tenant": tenant, **form})
        if tenant != self.tenant or form.get("client_id") != self.client_id:
            return 400, {"error": "unauthorized_client", "error_description": "AADSTS700016: unknown application"}
        if form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret."}
        audience = form.get("scope", "").removesuffix("/.default")
        token = access_token(tenant, self.client_id, audience, self.token_lifetime)
        return 200, {"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600, "access_token": token}

    def managed_identity(self, query: dict[str, str], header: str | None) -> tuple[int, dict[str, Any]]:
        self.requests.append({"flow": "managed_identity", "header": header, **query})
        if header != self.identity_header:
            return 401, {"error": "unauthorized", "error_description": "wrong X-IDENTITY-HEADER"}
        resource = query.get("resource", "")
        token = access_token(self.tenant, "managed-identity", resource.removesuffix("/.default"), self.token_lifetime)
        expires_on = int(time.time()) + 3600
        return 200, {"access_token": token, "expires_on": expires_on, "resource": resource, "token_type": "Bearer"}


def _handler(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            segments = parts.path.strip("/").split("/")
            if parts.path == MSI_PATH:
                self._answer(*server.managed_identity(query, self.headers.get("X-IDENTITY-HEADER")))
            elif segments[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                self._answer(200, server.openid_configuration(segments[0]))
            else:
                self._answer(404, {"error": "not_found"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            form = {k: v[0] for k, v in parse_qs(body).items()}
            segments = urlsplit(self.path).path.strip("/").split("/")
            if segments[1:] == ["oauth2", "v2.0", "token"]:
                self._answer(*server.client_credentials(segments[0], form))
            else:
                self._answer(404, {"error": "not_found"})

    return Handler


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1, shared by the session."""
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def entra(tls: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenServer]:
    """A local Entra for `TENANT` / `CLIENT_ID` / `CLIENT_SECRET`; this process trusts its certificate
    (and an `azurite_tls`'s) for the test, and sees no azure-identity variables of its own."""
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, str(tls[0]))
    for name in IDENTITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    server = TokenServer(tls[0], tls[1], TENANT, CLIENT_ID, CLIENT_SECRET).start()
    yield server
    server.stop()


def principal(entra: TokenServer, secret: str = CLIENT_SECRET) -> dict[str, Any]:
    """The ``abs_*`` options of a service principal authenticating at `entra`."""
    return {"abs_client_id": CLIENT_ID, "abs_client_secret": secret, "abs_tenant_id": TENANT,
            "abs_authority_host": entra.url}  # fmt: skip
