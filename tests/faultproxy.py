"""A tiny HTTP proxy in front of a real OpenSearch that fails the first N `_bulk` calls,
and can require HTTP basic auth as Amazon OpenSearch Service with fine-grained access
control does."""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class FaultProxy:
    """Forward to ``upstream``; answer the first ``fail_first`` bulk calls with ``status``."""

    def __init__(
        self,
        upstream: str,
        fail_first: int = 0,
        status: int = 429,
        require_auth: tuple[str, str] | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.expected = (
            "Basic " + base64.b64encode(":".join(require_auth).encode()).decode()
            if require_auth
            else None
        )
        self.refused = 0
        self.remaining = fail_first
        self.status = status
        self.injected = 0
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                proxy.headers.append({k.lower(): v for k, v in self.headers.items()})
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.expected and self.headers.get("Authorization") != proxy.expected:
                    proxy.refused += 1
                    msg = b'{"error":"unauthorized","status":401}'
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="OpenSearch"')
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                if "_bulk" in self.path:
                    with proxy.lock:
                        fail = proxy.remaining > 0
                        if fail:
                            proxy.remaining -= 1
                            proxy.injected += 1
                    if fail:
                        msg = b'{"error":"injected","status":%d}' % proxy.status
                        self.send_response(proxy.status)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(msg)))
                        self.end_headers()
                        self.wfile.write(msg)
                        return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length")
                }
                resp = httpx.request(
                    self.command,
                    proxy.upstream + self.path,
                    content=body,
                    headers=headers,
                    timeout=60,
                )
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "content-encoding",
                        "connection",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
