"""TLS and basic auth from an exporter-toolkit web config file; bearer token on writes."""
import base64
import json
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request

import bcrypt
import pytest

from processes import PYTHON, free_port, on_free_ports, spawn, wait_until
from sdk import emit, http_exporter, provider

USER, PASSWORD, TOKEN = "prometheus", "correct horse", "write-token"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def server_certificate(d):
    """server.key and a self-signed server.crt for 127.0.0.1 in `d`."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificates")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", "server.key", "-out", "server.crt",
            cwd=d)


@on_free_ports
def start_with_web_config(d, name: str, web_config: dict, ready_context: ssl.SSLContext, *settings: str):
    """The exporter with `web_config` as its web config file, on free ports, once /readyz answers
    over TLS with `ready_context`; proc.ports holds the ports."""
    (d / "web.yml").write_text(json.dumps(web_config))
    ports = {listener: free_port() for listener in ("http", "grpc", "web")}
    args = [PYTHON, "-m", "spanscope.cli", "--web-config-file", str(d / "web.yml"),
            "--otlp-http", f"127.0.0.1:{ports['http']}", "--otlp-grpc", f"127.0.0.1:{ports['grpc']}",
            "--web", f"127.0.0.1:{ports['web']}", "--set", "shutdown.grace=0"]
    proc = spawn(args + [a for setting in settings for a in ("--set", setting)], d, name)
    proc.ports = ports

    def ready():
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{ports['web']}/readyz", context=ready_context,
                                        timeout=2) as r:
                return r.status == 200
        except OSError:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{name} exporter exited:\n{proc.log()}") from None
            return False

    wait_until(ready, what=f"{name} exporter ready")
    return proc


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    server_certificate(d)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    ctx = ssl.create_default_context(cafile=str(d / "server.crt"))
    proc = start_with_web_config(
        d, "secured", {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
                       "basic_auth_users": {USER: hashed}},
        ctx, "traces.finish_delay=0.05", f"auth.bearer_token={TOKEN}")
    ports = proc.ports
    proc.urls = {"web": f"https://127.0.0.1:{ports['web']}", "http": f"https://127.0.0.1:{ports['http']}",
                 "grpc": f"127.0.0.1:{ports['grpc']}", "ca": str(d / "server.crt"), "ctx": ctx}
    yield proc
    proc.stop()


def get(proc, path, auth=True, method="GET", body=None, headers=None):
    h = dict(headers or {})
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    if body is not None:
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(proc.urls["web"] + path, method=method, headers=h,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, context=proc.urls["ctx"], timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_basic_auth_guards_every_endpoint_but_the_probes(secured):
    assert get(secured, "/metrics", auth=False)[0] == 401
    assert get(secured, "/api/features", auth=False)[0] == 401
    assert get(secured, "/healthz", auth=False)[0] == 200
    assert get(secured, "/metrics")[0] == 200
    wrong = {"Authorization": "Basic " + base64.b64encode(b"prometheus:nope").decode()}
    assert get(secured, "/metrics", auth=False, headers=wrong)[0] == 401


def test_plain_http_is_refused_on_the_tls_port(secured):
    with pytest.raises(OSError):
        urllib.request.urlopen(secured.urls["web"].replace("https", "http") + "/healthz", timeout=5)


def test_bearer_token_rides_in_its_own_header_under_basic_auth(secured):
    assert get(secured, "/api/features/home_assistant", method="PUT", body={"enabled": True})[0] == 401
    status, _ = get(secured, "/api/features/home_assistant", method="PUT", body={"enabled": True},
                    headers={"X-Spanscope-Token": TOKEN})
    assert status == 200


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sdk_exports_over_tls_with_credentials(secured, protocol, monkeypatch):
    # requests lets these variables override the exporter's own certificate_file
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    if protocol == "http":
        exporter = http_exporter(secured.urls["http"], certificate_file=secured.urls["ca"],
                                 headers={"Authorization": basic})
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from grpc import ssl_channel_credentials
        with open(secured.urls["ca"], "rb") as f:
            exporter = OTLPSpanExporter(endpoint=secured.urls["grpc"], credentials=ssl_channel_credentials(f.read()),
                                        headers={"authorization": basic})
    service = f"tls-{protocol}"
    tp = provider(exporter, service)
    emit(tp.get_tracer("t"), ("gateway", 0, 10, {"pipeline.component": "gateway"}))
    tp.shutdown()
    wait_until(lambda: f'pipeline_requests_total{{service="{service}"' in get(secured, "/metrics")[1],
               what=f"request over {protocol}")


def test_unauthenticated_otlp_http_is_refused(secured, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    exporter = http_exporter(secured.urls["http"], certificate_file=secured.urls["ca"])
    from opentelemetry.sdk.trace.export import SpanExportResult
    tp = provider(exporter, "anon")
    span = emit(tp.get_tracer("t"), ("gateway", 0, 10))
    assert exporter.export([span]) == SpanExportResult.FAILURE
    tp.shutdown()


@pytest.mark.parametrize("authorization", [None, "Basic " + base64.b64encode(b"prometheus:nope").decode(),
                                           "Basic " + base64.b64encode(b"nobody:x").decode(), "Bearer x"])
def test_otlp_grpc_needs_the_basic_auth_credentials_too(secured, authorization):
    import grpc
    method = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    with open(secured.urls["ca"], "rb") as f, grpc.secure_channel(secured.urls["grpc"],
                                                                  grpc.ssl_channel_credentials(f.read())) as channel:
        metadata = [("authorization", authorization)] if authorization else None
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary(method)(b"", timeout=10, metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        assert channel.unary_unary(method)(b"", timeout=10, metadata=[("authorization", basic)]) == b""


@pytest.fixture(scope="module")
def mutual(tmp_path_factory):
    """An exporter whose listeners require client certificates signed by its client CA."""
    d = tmp_path_factory.mktemp("mtls")
    server_certificate(d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=client-ca",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=client", "-keyout", "client.key",
            "-out", "client.csr", cwd=d)
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "1", "-out", "client.crt", cwd=d)

    def context(with_cert: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(d / "server.crt"))
        if with_cert:
            ctx.load_cert_chain(str(d / "client.crt"), str(d / "client.key"))
        return ctx

    proc = start_with_web_config(d, "mutual", {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key",
        "client_ca_file": "ca.crt", "client_auth_type": "RequireAndVerifyClientCert"}}, context(True))
    proc.dir, proc.context = d, context
    yield proc
    proc.stop()


def test_client_certificates_are_required_on_otlp_http(mutual):
    url = f"https://127.0.0.1:{mutual.ports['http']}/v1/traces"
    req = urllib.request.Request(url, data=b"", headers={"Content-Type": "application/x-protobuf"})
    with pytest.raises(OSError):
        urllib.request.urlopen(req, context=mutual.context(False), timeout=10).read()
    with urllib.request.urlopen(req, context=mutual.context(True), timeout=10) as r:
        assert r.status == 200


def test_client_certificates_are_required_on_otlp_grpc(mutual):
    import grpc
    d = mutual.dir
    root = (d / "server.crt").read_bytes()
    method = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    address = f"127.0.0.1:{mutual.ports['grpc']}"
    without = grpc.ssl_channel_credentials(root)
    with grpc.secure_channel(address, without) as channel, pytest.raises(grpc.RpcError) as refused:
        channel.unary_unary(method)(b"", timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    with_cert = grpc.ssl_channel_credentials(root, (d / "client.key").read_bytes(), (d / "client.crt").read_bytes())
    with grpc.secure_channel(address, with_cert) as channel:
        assert channel.unary_unary(method)(b"", timeout=10) == b""  # an empty ExportTraceServiceResponse


def test_client_auth_without_a_client_ca_is_a_configuration_error(tmp_path):
    (tmp_path / "web.yml").write_text(json.dumps({"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key", "client_auth_type": "RequireAndVerifyClientCert"}}))
    server_certificate(tmp_path)
    run = subprocess.run([PYTHON, "-m", "spanscope.cli", "--web-config-file", str(tmp_path / "web.yml"),
                          "--check-config"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert "client_auth_type RequireAndVerifyClientCert needs client_ca_file" in run.stderr
