"""TLS and basic auth for the web and OTLP/HTTP listeners (TLS, with client certificates, for OTLP/gRPC
too), from an exporter-toolkit web config file.

The file has the format of the Prometheus exporter-toolkit (`--web.config.file`), so one file can
serve Prometheus exporters and spanscope alike:

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_ca_file: ca.crt                   # optional: mutual TLS
      client_auth_type: RequireAndVerifyClientCert
    basic_auth_users:
      prometheus: $2b$12$...                   # bcrypt hash (htpasswd -nBC 12 "" | tr -d ':\\n')
"""
from __future__ import annotations

import base64
import hashlib
import os
import ssl
from dataclasses import dataclass, field

from aiohttp import web

from ..config import ConfigError, read_yaml

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


@dataclass
class WebSecurity:
    ssl_context: ssl.SSLContext | None = None
    cert_pem: bytes | None = None                # for the gRPC listener's credentials
    key_pem: bytes | None = None
    client_ca_pem: bytes | None = None           # the gRPC listener verifies client certificates with it
    require_client_cert: bool = False
    users: dict = field(default_factory=dict)   # user -> bcrypt hash
    _verified: set = field(default_factory=set)  # sha256(user, password) of checked credentials

    def check(self, user: str, password: str) -> bool:
        """bcrypt is slow on purpose; remember credentials already verified (as exporter-toolkit does)."""
        hashed = self.users.get(user)
        key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        if key in self._verified:
            return True
        import bcrypt  # imported only when basic auth is configured
        ok = hashed is not None and bcrypt.checkpw(password.encode(), hashed.encode())
        if ok and len(self._verified) < 10_000:
            self._verified.add(key)
        return ok


def _read(base: str, name: str) -> bytes:
    with open(os.path.join(base, name), "rb") as f:
        return f.read()


def load_web_config(path: str | None) -> WebSecurity:
    if not path:
        return WebSecurity()
    where = f"listen.web_config_file ({path})"
    doc = read_yaml(path, "listen.web_config_file") or {}
    if not isinstance(doc, dict) or set(doc) - {"tls_server_config", "basic_auth_users", "http_server_config"}:
        raise ConfigError(f"{where}: expected tls_server_config and/or basic_auth_users")
    base = os.path.dirname(os.path.abspath(path))
    security = WebSecurity()
    tls = doc.get("tls_server_config")
    if tls:
        if not isinstance(tls, dict) or not tls.get("cert_file") or not tls.get("key_file"):
            raise ConfigError(f"{where}: tls_server_config needs cert_file and key_file")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(os.path.join(base, tls["cert_file"]), os.path.join(base, tls["key_file"]))
            auth = tls.get("client_auth_type", "NoClientCert")
            if auth not in CLIENT_AUTH:
                raise ConfigError(f"{where}: client_auth_type: expected one of {', '.join(CLIENT_AUTH)}")
            if auth != "NoClientCert" and not tls.get("client_ca_file"):
                raise ConfigError(f"{where}: client_auth_type {auth} needs client_ca_file (the CA that signs "
                                  f"client certificates)")
            if tls.get("client_ca_file"):
                ctx.load_verify_locations(os.path.join(base, tls["client_ca_file"]))
            ctx.verify_mode = CLIENT_AUTH[auth]
            # The gRPC listener takes the same files as PEM bytes (Python's ssl only loads paths).
            security.cert_pem = _read(base, tls["cert_file"])
            security.key_pem = _read(base, tls["key_file"])
            if tls.get("client_ca_file"):
                security.client_ca_pem = _read(base, tls["client_ca_file"])
                security.require_client_cert = CLIENT_AUTH[auth] == ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{where}: cannot load the TLS certificate or key: {exc}") from None
        security.ssl_context = ctx
    users = doc.get("basic_auth_users") or {}
    if not isinstance(users, dict) or not all(isinstance(h, str) and h.startswith("$2") for h in users.values()):
        raise ConfigError(f"{where}: basic_auth_users: expected user: bcrypt hash")
    if users:
        try:
            import bcrypt  # noqa: F401
        except ImportError:
            raise ConfigError(f"{where}: basic_auth_users needs the bcrypt package (pip install bcrypt)") from None
    security.users = dict(users)
    return security


def basic_auth_middleware(security: WebSecurity):
    @web.middleware
    async def check(request: web.Request, handler):
        if not security.users or request.path in ("/healthz", "/readyz"):  # probes stay open
            return await handler(request)
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user, password = "", ""
        if scheme.lower() != "basic" or not security.check(user, password):
            return web.json_response({"error": "authentication required", "status": 401}, status=401,
                                     headers={"WWW-Authenticate": 'Basic realm="spanscope"'})
        return await handler(request)

    return check
