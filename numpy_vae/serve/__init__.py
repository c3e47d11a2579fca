"""The live page of a run: ``vae serve RUN_DIR`` and ``vae train --serve``.

    server.py    LiveServer: the standard library's ThreadingHTTPServer, its routes, JSON errors
    run_view.py  RunView: the run folder (read-only) and its latest checkpoint's pictures, cached by mtime
    params.py    the query-string checks (ServeError: status, message, the parameter and its range)
    images.py    digits as PNG bytes (zlib only), also used by the TensorBoard log
    static/      the page: index.html, page.js, page.css (no build step, nothing fetched from elsewhere)
"""
from .params import ServeError
from .run_view import RunView
from .server import LiveServer, is_loopback

__all__ = ["LiveServer", "RunView", "ServeError", "is_loopback"]
