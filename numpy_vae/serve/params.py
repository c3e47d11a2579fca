"""Checking a request's query string: every parameter named, typed and bounded, or a 400 that says which and why.

Each route declares the parameters it takes; anything else in the query (an
unknown name, a repeated one, a value out of range) is refused with a
:class:`ServeError` whose JSON names the parameter and the allowed values.
"""
from __future__ import annotations

import math
import re
from urllib.parse import parse_qsl

MAX_FIELDS = 16
INTEGER = re.compile(r"[+-]?[0-9]{1,12}")
DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,12}(?:\.[0-9]{0,12})?|\.[0-9]{1,12})(?:[eE][+-]?[0-9]{1,3})?")
TOKEN = re.compile(r"[A-Za-z0-9._-]{0,40}")


class ServeError(Exception):
    """A request the server refuses or cannot answer: HTTP ``status``, a one-line message, extra JSON fields,
    and extra response ``headers`` (such as Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, **fields):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.fields = fields

    def payload(self) -> dict:
        """The JSON body of the error response: {"error": message, "status": status, **fields}."""
        return {"error": self.message, "status": self.status, **self.fields}


def parse_query(query: str, allowed: tuple[str, ...], path: str) -> dict[str, str]:
    """The query string as {name: value}, refusing names not in ``allowed``, repeated names and malformed pairs."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query), max_num_fields=MAX_FIELDS,
                          errors="strict")
    except (ValueError, UnicodeDecodeError) as e:
        raise ServeError(400, f"malformed query string for {path} ({e})") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            shown = ", ".join(allowed) if allowed else "none"
            raise ServeError(400, f"unknown parameter {name!r} for {path} (allowed: {shown})",
                             parameter=name, allowed=list(allowed))
        if name in params:
            raise ServeError(400, f"parameter {name!r} given more than once; give it once", parameter=name)
        params[name] = value
    return params


def integer(params: dict[str, str], name: str, lo: int, hi: int, default: int | None = None,
            note: str = "") -> int:
    """``params[name]`` as an int in [lo, hi] (``default`` if absent; required if the default is None)."""
    allowed = f"an integer from {lo} to {hi}"
    if name not in params:
        if default is None:
            raise ServeError(400, f"missing parameter {name!r}: {allowed}", parameter=name, allowed=[lo, hi])
        return default
    text = params[name]
    value = int(text) if INTEGER.fullmatch(text) else None
    if value is None or not lo <= value <= hi:
        raise ServeError(400, f"{name} must be {allowed}, got {text[:40]!r}{note}", parameter=name, allowed=[lo, hi])
    return value


def number(params: dict[str, str], name: str, lo: float, hi: float) -> float:
    """``params[name]`` (required) as a finite float in [lo, hi]: a latent coordinate."""
    allowed = f"a number from {lo:g} to {hi:g}"
    if name not in params:
        raise ServeError(400, f"missing parameter {name!r}: {allowed}", parameter=name, allowed=[lo, hi])
    text = params[name]
    value = float(text) if DECIMAL.fullmatch(text) else math.nan
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ServeError(400, f"{name} must be {allowed}, got {text[:40]!r}", parameter=name, allowed=[lo, hi])
    return value


def token(params: dict[str, str], name: str) -> str:
    """An optional short cache-busting token (letters, digits, '.', '_', '-'); its value is not used."""
    text = params.get(name, "")
    if not TOKEN.fullmatch(text):
        raise ServeError(400, f"{name} must be at most 40 letters, digits, '.', '_' or '-'", parameter=name)
    return text
