"""Who may talk to the server: the bind policy, Host and Origin checks, CORS and the token.

The threats, for a server that runs workflows and reads and writes files on the user's machine:

* another machine on the network: we bind loopback unless told otherwise, and refuse a
  non-loopback bind without a token;
* a web page the user visits (CSRF): a state-changing request, or a WebSocket (browsers apply no
  CORS to those), whose ``Origin`` is not our own is refused unless ``--cors-origin`` allows it;
* DNS rebinding (a page whose name now resolves to 127.0.0.1 is "same-origin" with us): on a
  loopback bind the ``Host`` header must name a loopback host;
* a shared machine or an exposed port: ``--auth-token``, as ``Authorization: Bearer``,
  ``?token=`` or the cookie a successful ``?token=`` sets (so a browser's image and WebSocket
  requests, which cannot carry headers, work after one authenticated visit).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from .config import ServerConfig

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TOKEN_COOKIE = "latentgraph_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class UnsafeBind(ValueError):
    """Binding this host would expose the server without a token."""


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth_token: str | None) -> None:
    if not is_loopback(host) and not auth_token:
        raise UnsafeBind(
            f"refusing to listen on {host!r} without --auth-token: anyone who can reach it could "
            "run workflows and read your outputs. Give --auth-token, or bind 127.0.0.1.")


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, default ports dropped; '' when it is not a URL."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return ""
    if not parts.scheme or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host += f":{port}"
    return f"{parts.scheme.lower()}://{host.lower()}"


def own_origin(request: web.Request) -> str:
    return normalize_origin(f"{request.scheme}://{request.host}")


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _refuse(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": {"type": "forbidden" if status == 403 else "unauthorized",
                                        "message": message}}, status=status, headers=headers)


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


class OriginPolicy:
    """The Host check, the Origin check and CORS headers for the allowed origins."""

    def __init__(self, config: ServerConfig) -> None:
        self.check_host = is_loopback(config.host)
        self.any_origin = "*" in config.cors_origins
        self.allowed = frozenset(normalize_origin(o) for o in config.cors_origins if o != "*")

    def allows(self, origin: str) -> bool:
        return self.any_origin or normalize_origin(origin) in self.allowed

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.check_host and not is_loopback(_host_name(request.host)):
            return _refuse(403, "this server only answers to a loopback host name (DNS rebinding guard)")
        origin = request.headers.get(hdrs.ORIGIN)
        cross = origin is not None and normalize_origin(origin) != own_origin(request)
        allowed = cross and origin is not None and self.allows(origin)
        if request.method == "OPTIONS" and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers:
            if cross and not allowed:
                return _refuse(403, f"origin {origin} is not allowed (see --cors-origin)")
            return web.Response(status=204, headers={
                **self._cors_headers(origin if allowed else None),
                hdrs.ACCESS_CONTROL_ALLOW_METHODS: "GET, POST, PUT, DELETE, OPTIONS",
                hdrs.ACCESS_CONTROL_ALLOW_HEADERS: "Content-Type, Authorization",
                hdrs.ACCESS_CONTROL_MAX_AGE: "600",
            })
        if cross and not allowed and (request.method not in SAFE_METHODS or _is_websocket(request)):
            return _refuse(403, f"cross-origin request from {origin} refused (see --cors-origin)")
        try:
            response = await handler(request)
        except web.HTTPException as err:
            if allowed and origin is not None:
                err.headers.update(self._cors_headers(origin))
            raise
        if allowed and origin is not None and not response.prepared:
            response.headers.update(self._cors_headers(origin))
        return response

    @staticmethod
    def _cors_headers(origin: str | None) -> dict[str, str]:
        if origin is None:
            return {}
        return {hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin, hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS: "true",
                hdrs.VARY: "Origin"}


class TokenCheck:
    """``--auth-token`` on every route, WebSocket included; compared in constant time."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def _matches(self, supplied: str | None) -> bool:
        return supplied is not None and hmac.compare_digest(supplied.encode(), self._token)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        auth = request.headers.get(hdrs.AUTHORIZATION, "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        query = request.query.get("token")
        if not (self._matches(bearer) or self._matches(query)
                or self._matches(request.cookies.get(TOKEN_COOKIE))):
            return _refuse(401, "a valid token is required (Authorization: Bearer TOKEN or ?token=TOKEN)",
                           **{hdrs.WWW_AUTHENTICATE: 'Bearer realm="latentgraph"'})
        response = await handler(request)
        if self._matches(query) and not response.prepared:
            response.set_cookie(TOKEN_COOKIE, self._token.decode(), httponly=True, samesite="Strict",
                                secure=request.secure, path="/")
        return response


def security_middlewares(config: ServerConfig) -> list[Middleware]:
    """Outermost first: origin/host checks (they answer preflights, which carry no token), then auth."""
    middlewares: list[Middleware] = [OriginPolicy(config).middleware]
    if config.auth_token:
        middlewares.append(TokenCheck(config.auth_token).middleware)
    return middlewares


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Signal handler for every response: no MIME sniffing, no framing by other sites."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    response.headers.setdefault("Referrer-Policy", "same-origin")
