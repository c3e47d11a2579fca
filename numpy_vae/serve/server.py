"""The live page's HTTP server: the standard library's ThreadingHTTPServer, GET and HEAD only, JSON errors.

Routes (anything else is a 404 with a JSON body)::

    /                      the page (static/index.html), its script and style under /static/
    /api/run               JSON: name, config, status, checkpoint, figures, limits
    /api/metrics           JSON: metrics.csv's columns and rows (the page polls it)
    /api/reconstructions   PNG: test digits and their reconstructions, by the latest checkpoint
    /api/samples           PNG: decodes of fixed prior draws z ~ N(0, I)
    /api/generate          PNG: ?digit=0..9&count=1..64[&seed=N]: test digits and decodes around their posteriors
    /api/latent            JSON (2-D latent): posterior means of test digits, for the clickable map
    /api/decode            PNG (2-D latent): ?x=..&y=.. the decode of that latent point
    /files/NAME            the run folder's own config.json, metrics.csv, report.html, evaluation.json, *.png

Every query parameter is checked (``params``); every error is JSON,
``{"error": "...", "status": N, ...}``.  Bound to a loopback address, the
server also refuses a Host header naming another machine (a DNS-rebinding
guard).  It reads the run folder and never writes to it.
"""
from __future__ import annotations

import ipaddress
import re
import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import unquote_to_bytes, urlsplit

from . import params as qp
from .params import ServeError
from .run_view import LATENT_LIMIT, MAX_COUNT, MAX_SEED, RunView, json_bytes

JSON = "application/json"
PNG = "image/png"
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/static/page.js": ("page.js", "text/javascript; charset=utf-8"),
          "/static/page.css": ("page.css", "text/css; charset=utf-8")}
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
REPORT_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'none'; sandbox"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or "localhost") is a loopback address: reachable from this machine only."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


#: A Host header as RFC 9110 writes it: host [":" port], the host an [IPv6] literal, an IPv4 address or a name.
HOST_HEADER = re.compile(r"(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?))"
                         r"(?::(?P<port>[0-9]{1,5}))?")


def host_name(header: str) -> str | None:
    """The host part of a Host header: "127.0.0.1:8000" -> "127.0.0.1", "[::1]:8000" -> "::1"; None when the
    header is not exactly host[:port] ("[::1]evil.com", "[::1", "127.0.0.1:P", "a, b", a port over 65535)."""
    match = HOST_HEADER.fullmatch(header.strip(" \t").lower())
    if match is None or (match["port"] is not None and int(match["port"]) > 65535):
        return None
    if match["ip6"] is not None:
        try:
            ipaddress.IPv6Address(match["ip6"])
        except ValueError:
            return None
        return match["ip6"]
    return match["name"]


def load_static() -> dict[str, tuple[bytes, str]]:
    """The page's files (package data numpy_vae/serve/static), read once: {route: (bytes, content type)}."""
    folder = resources.files("numpy_vae.serve") / "static"
    return {route: ((folder / name).read_bytes(), kind) for route, (name, kind) in STATIC.items()}


# ---------------------------------------------------------------------- routes: (view, query) -> (body, type)
def _json(value) -> tuple[bytes, str]:
    return json_bytes(value), JSON


def route_run(view: RunView, q: dict) -> tuple[bytes, str]:
    qp.token(q, "v")
    return _json(view.summary())


def route_metrics(view: RunView, q: dict) -> tuple[bytes, str]:
    qp.token(q, "v")
    return view.folder.metrics_json(), JSON


def route_reconstructions(view: RunView, q: dict) -> tuple[bytes, str]:
    qp.token(q, "v")
    return view.reconstructions_png(), PNG


def route_samples(view: RunView, q: dict) -> tuple[bytes, str]:
    qp.token(q, "v")
    return view.samples_png(), PNG


def route_generate(view: RunView, q: dict) -> tuple[bytes, str]:
    digit = qp.integer(q, "digit", 0, 9)
    count = qp.integer(q, "count", 1, MAX_COUNT, default=8,
                       note=f" (at most {MAX_COUNT} a request: a larger one would take too long)")
    seed = qp.integer(q, "seed", 0, MAX_SEED, default=0)
    qp.token(q, "v")
    return view.generate_png(digit, count, seed), PNG


def route_latent(view: RunView, q: dict) -> tuple[bytes, str]:
    qp.token(q, "v")
    return _json(view.latent_map())


def route_decode(view: RunView, q: dict) -> tuple[bytes, str]:
    x = qp.number(q, "x", -LATENT_LIMIT, LATENT_LIMIT)
    y = qp.number(q, "y", -LATENT_LIMIT, LATENT_LIMIT)
    qp.token(q, "v")
    return view.decode_png(x, y), PNG


#: path -> (handler, the query parameters it takes)
ROUTES = {
    "/api/run": (route_run, ("v",)),
    "/api/metrics": (route_metrics, ("v",)),
    "/api/reconstructions": (route_reconstructions, ("v",)),
    "/api/samples": (route_samples, ("v",)),
    "/api/generate": (route_generate, ("digit", "count", "seed", "v")),
    "/api/latent": (route_latent, ("v",)),
    "/api/decode": (route_decode, ("x", "y", "v")),
}
FILES_PREFIX = "/files/"


class PageHandler(BaseHTTPRequestHandler):
    """One request: routed, checked, answered; the server (``LiveServer``) holds the view and the page."""

    server_version = "vae-serve"
    error_content_type = JSON
    timeout = 60                       # seconds a connection may sit idle before its thread gives up on it

    def version_string(self) -> str:
        """The Server header: no Python version."""
        return self.server_version

    # -------------------------------------------------------------- methods
    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()                 # the same answer; _send leaves the body out

    def _refuse_method(self) -> None:
        self._send(405, *_json({"error": f"method {self.command} not allowed: this server only reads (GET, HEAD)",
                                "status": 405}), extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse_method

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a malformed request line, an unknown method, ...) as JSON too."""
        text = message or self.responses.get(code, ("error",))[0]
        if code == 501:
            code, text = 405, f"method {self.command!r} not allowed: this server only reads (GET, HEAD)"
        self.close_connection = True
        try:
            self._send(code, *_json({"error": text, "status": code}))
        except OSError:
            pass

    # -------------------------------------------------------------- answering
    def _answer(self) -> None:
        try:
            status, (body, kind, extra) = 200, self._route()
        except ServeError as e:
            status, (body, kind), extra = e.status, _json(e.payload()), e.headers
        except Exception as e:          # a bug: one line to the client, the traceback to the server's log
            self.server.log_line(f"vae serve: internal error on {self.path[:200]}:\n{traceback.format_exc()}")
            status, extra = 500, {}
            body, kind = _json({"error": f"internal error ({type(e).__name__}: {' '.join(str(e).split())})",
                                "status": 500})
        try:
            self._send(status, body, kind, extra)
        except (BrokenPipeError, ConnectionResetError):     # the page went away before the answer
            pass

    def _route(self) -> tuple[bytes, str, dict]:
        """(body, content type, extra headers) of the request, or ServeError."""
        self._check_host()
        url = urlsplit(self.path)
        path = url.path
        if not path.startswith("/"):
            raise ServeError(400, "the request target must be a path starting with '/'")
        if path in self.server.static:
            qp.parse_query(url.query, ("v",) if path != "/" else (), path)
            body, kind = self.server.static[path]
            return body, kind, {"Content-Security-Policy": PAGE_POLICY}
        if path in ROUTES:
            handler, allowed = ROUTES[path]
            body, kind = handler(self.server.view, qp.parse_query(url.query, allowed, path))
            return body, kind, {}
        if path.startswith(FILES_PREFIX):
            qp.token(qp.parse_query(url.query, ("v",), FILES_PREFIX), "v")
            try:
                name = unquote_to_bytes(path[len(FILES_PREFIX):]).decode("utf-8")
            except UnicodeDecodeError:
                raise ServeError(404, "not served: a file name that is not UTF-8") from None
            body, kind = self.server.view.folder.read_file(name)
            return body, kind, {"Content-Security-Policy": REPORT_POLICY} if kind.startswith("text/html") else {}
        raise ServeError(404, f"no such page: {path[:120]}; the page is at / and its data under /api/",
                         routes=["/", *ROUTES, FILES_PREFIX + "NAME"])

    def _check_host(self) -> None:
        """A Host header must be host[:port] (400 otherwise); bound to loopback, it must name this machine
        (a DNS-rebinding guard)."""
        headers = self.headers.get_all("Host") or []
        if len(headers) > 1:
            raise ServeError(400, "more than one Host header; send one")
        if not headers:
            return
        header = headers[0]
        name = host_name(header)
        if name is None:
            raise ServeError(400, f"malformed Host header {header[:80]!r}: expected host[:port], such as "
                                  f"127.0.0.1:8000 or [::1]:8000")
        if not self.server.loopback:
            return
        if name not in LOOPBACK_NAMES and not is_loopback(name):
            raise ServeError(403, f"Host {header[:80]!r} refused: this server answers only to 127.0.0.1 and "
                                  f"localhost (it listens on loopback)")

    def _send(self, status: int, body: bytes, kind: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        """Requests are logged only where the server was given ``log_requests`` (``vae serve --verbose``)."""
        if self.server.log_requests:
            self.server.log_line(f"{self.address_string()} {format % args}")


class LiveServer(ThreadingHTTPServer):
    """The live page of one :class:`RunView` at ``host``:``port`` (port 0: a free one; see :attr:`port`)."""

    daemon_threads = True
    #: the listen backlog: connections the kernel holds until accepted (socketserver's 5 makes a burst of
    #: clients wait for SYN retransmits, 1 s and more, before the server even sees them)
    request_queue_size = 128

    def __init__(self, view: RunView, host: str = "127.0.0.1", port: int = 0, log=None, log_requests: bool = False):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.view = view
        self.static = load_static()
        self.loopback = is_loopback(host)
        self.log_requests = log_requests
        self._log = log
        self._thread: threading.Thread | None = None
        super().__init__((host.strip("[]"), port), PageHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """The page's address; for a wildcard host, the one to open on this machine."""
        host = self.server_address[0]
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1" if self.address_family == socket.AF_INET else "::1"
        return f"http://[{host}]:{self.port}/" if ":" in host else f"http://{host}:{self.port}/"

    def log_line(self, text: str) -> None:
        if self._log is not None:
            self._log(text)

    def handle_error(self, request, client_address) -> None:
        """A connection that failed outside a handler (a client gone mid-request): one line, no traceback."""
        error = sys.exc_info()[1]
        self.log_line(f"vae serve: connection from {client_address[0]} failed ({type(error).__name__}: {error})")

    def start_in_thread(self) -> threading.Thread:
        """Serve in a daemon thread (beside a training run); :meth:`stop` ends it."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.25},
                                        name="vae-serve", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        """Stop serving and close the socket (the thread, if any, ends)."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()
