"""TLS and basic auth for every listener (web, OTLP/HTTP and OTLP/gRPC), from an exporter-toolkit web
config file.

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

import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import web

from ..config import ConfigError, read_yaml

BCRYPT_HASH = re.compile(r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}")
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


PASSWORD_CHECKS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bcrypt")  # never the event loop
MAX_PASSWORD_BYTES = 72  # bcrypt's limit: longer passwords are refused, not truncated (as Go's bcrypt does)
VERIFIED_TTL = 60.0      # seconds a verified user and password, unused, stays verified without bcrypt
VERIFIED_MAX = 1000      # remembered successes; the oldest is forgotten first


@dataclass
class WebSecurity:
    ssl_context: ssl.SSLContext | None = None
    cert_pem: bytes | None = None                # for the gRPC listener's credentials
    key_pem: bytes | None = None
    client_ca_pem: bytes | None = None           # the gRPC listener verifies client certificates with it
    require_client_cert: bool = False
    users: dict = field(default_factory=dict)   # user -> bcrypt hash
    clock: Callable[[], float] = time.monotonic
    # HMAC(per-process key, user NUL password) -> when it stops counting: a memory dump shows no
    # password, nor a hash of one that could be attacked offline.
    _verified: OrderedDict = field(default_factory=OrderedDict)
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _dummy: bytes | None = None                  # checked for unknown users: every miss costs one bcrypt

    def check(self, user: str, password: str) -> bool:
        """bcrypt is slow on purpose; recent successes are remembered for VERIFIED_TTL seconds (as
        exporter-toolkit caches them). Blocking: call `verify` from the event loop."""
        key = hmac.new(self._key, f"{user}\0{password}".encode(errors="surrogateescape"), hashlib.sha256).digest()
        now = self.clock()
        with self._lock:  # two checking threads
            remembered = self._verified.pop(key, 0.0) > now
        if not remembered and not self._bcrypt(user, password.encode(errors="surrogateescape")):
            return False
        with self._lock:
            self._verified[key] = now + VERIFIED_TTL  # a success in use stays remembered
            while len(self._verified) > VERIFIED_MAX:
                self._verified.popitem(last=False)
        return True

    async def verify(self, credentials: tuple[str, str] | None) -> bool:
        """`check` on the password-check threads (the event loop keeps serving meanwhile); no
        credentials at all are refused at once."""
        if credentials is None:
            return False
        return await asyncio.get_running_loop().run_in_executor(PASSWORD_CHECKS, self.check, *credentials)

    async def verify_header(self, authorization: str) -> bool:
        """Whether an Authorization header's value carries valid basic-auth credentials."""
        return await self.verify(basic_credentials(authorization))

    def _bcrypt(self, user: str, password: bytes) -> bool:
        import bcrypt  # imported only when basic auth is configured
        hashed = self.users.get(user)
        if hashed is None:  # the same cost as a known user's, so a 401 does not tell which users exist
            if self._dummy is None:
                cost = int(next(iter(self.users.values())).split("$")[2])
                self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))
            bcrypt.checkpw(b"", self._dummy)
            return False
        if len(password) > MAX_PASSWORD_BYTES:
            bcrypt.checkpw(b"", hashed.encode())  # same cost again
            return False
        return bcrypt.checkpw(password, hashed.encode())


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
    if not isinstance(users, dict) or not all(isinstance(h, str) and BCRYPT_HASH.fullmatch(h) for h in users.values()):
        raise ConfigError(f"{where}: basic_auth_users: expected user: bcrypt hash")
    if users:
        try:
            import bcrypt  # noqa: F401
        except ImportError:
            raise ConfigError(f"{where}: basic_auth_users needs the bcrypt package (pip install bcrypt)") from None
    security.users = dict(users)
    return security


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic` header; None when it is anything else."""
    scheme, _, value = authorization.partition(" ")
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeError):  # not base64 (or not ASCII at all), or not UTF-8
        return None
    return (user, password) if scheme.lower() == "basic" and sep else None


def basic_auth_middleware(security: WebSecurity):
    @web.middleware
    async def check(request: web.Request, handler):
        if not security.users or request.path in ("/healthz", "/readyz"):  # probes stay open
            return await handler(request)
        if not await security.verify_header(request.headers.get("Authorization", "")):
            return web.json_response({"error": "authentication required", "status": 401}, status=401,
                                     headers={"WWW-Authenticate": 'Basic realm="spanscope"'})
        return await handler(request)

    return check
