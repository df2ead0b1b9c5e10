"""The one way out: every request the server makes to an address someone typed or configured
(crawls and 试采集, group robots, the duty chain, alert routes, the mail server, the LLM endpoint,
the app webhook, the WeChat API) is checked here before a connection is opened.

What is refused: loopback, private, link-local (cloud metadata 169.254.169.254 among them),
shared (100.64/10, Alibaba Cloud's metadata 100.100.100.200), multicast, reserved and unspecified
addresses, IPv4 and IPv6 alike, and IPv4 hidden in IPv6 (``::ffff:127.0.0.1``, 6to4, NAT64). The
check runs on the addresses a name resolves to, so ``localhost``, a public-looking name pointing
at 127.0.0.1 and odd spellings (``2130706433``, ``0x7f.1``, ``127.1``) are all caught; and the
connection is made to the very address that was checked (the URL's name stays in the Host header
and in TLS's SNI and certificate check), so a name cannot resolve once to a public address for
the check and again to an internal one for the connection (DNS rebinding). Every redirect is a
new request and is checked again.

What an operator allows (``ANJU_OUTBOUND_ALLOW``): named internal hosts, as ``host``,
``host:port`` or a URL prefix ``http://10.0.0.5:8000/v1``. A name matches as written in the URL,
never by what another name resolves to. Demo mode adds the demo site this service serves.

What a caller gets back on failure: a Chinese reason and, for an answer, the HTTP status, never
the remote body (``OutboundFailed.message``). The body of a successful answer is returned to the
code that asked (a robot's JSON ``errcode``), not to a person.

Scrapy's downloader has its own guard built on the same checks (crawlers.outbound).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from core.errors import AnjuError, InvalidInput

if TYPE_CHECKING:
    import httpx

    from core.settings import Settings

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

REFUSED = "目标地址是内网或本机地址，已拒绝"
BAD_SCHEME = "只能访问 http:// 或 https:// 地址"
NOT_RESOLVED = "域名无法解析"
NOT_CONNECTED = "无法连接"
MAX_REPLY_BYTES = 1024 * 1024  # a robot's or an API's JSON answer is a few hundred bytes
DEFAULT_PORTS = {"http": 80, "https": 443, "smtp": 25, "smtps": 465}
HTTP_SCHEMES = ("http", "https")
TRIED_ADDRESSES = 3  # a name with many addresses: the first few are tried in turn, all of them checked

# Besides what ipaddress calls private/reserved/not global, refused outright.
_ALSO_REFUSED = (
    ipaddress.ip_network("64:ff9b:1::/48"),  # NAT64 for local use (RFC 8215)
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix: judged by the IPv4 inside
_IPV4_SPELLING = re.compile(r"^[0-9a-fx.]+$", re.IGNORECASE)


class OutboundRefused(AnjuError):
    """The target is an address the server must not reach (or not a web address at all)."""

    status_code = 422
    code = "outbound_refused"
    default_message = REFUSED


class OutboundFailed(AnjuError):
    """The target could not be reached or did not answer in time; never carries the remote body."""

    status_code = 502
    code = "outbound_failed"
    default_message = NOT_CONNECTED

    def __init__(self, message: str | None = None, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


# --- addresses ---------------------------------------------------------------------------------


def literal_ip(host: str) -> IPAddress | None:
    """The address a host written as an IP literal stands for, in any spelling the C library
    accepts (``127.0.0.1``, ``127.1``, ``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``[::1]``,
    ``::ffff:127.0.0.1``); None for a name."""
    host = host.strip().removeprefix("[").removesuffix("]")
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    if not _IPV4_SPELLING.match(host) or not any(c.isdigit() for c in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))  # the C library's reading, as connect() does
    except OSError:
        return None


def is_public(address: IPAddress) -> bool:
    """True for an address on the public internet; False for anything internal or special."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address in _NAT64:
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None and not is_public(address.sixtofour):
            return False
        if address.teredo is not None and not all(is_public(a) for a in address.teredo):
            return False
        if address.is_site_local or any(address in net for net in _ALSO_REFUSED):
            return False
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def normalize_host(host: str) -> str:
    """Lower case, no brackets, no trailing dot, IDNA for non-ASCII names; an IP literal in its
    canonical spelling."""
    host = host.strip().removeprefix("[").removesuffix("]").rstrip(".").lower()
    literal = literal_ip(host)
    if literal is not None:
        return str(literal)
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return host
    return host


def is_localhost_name(host: str) -> bool:
    """``localhost`` and every ``*.localhost`` name are loopback (RFC 6761), whatever DNS says."""
    return host == "localhost" or host.endswith(".localhost")


# --- what the operator allows ------------------------------------------------------------------


@dataclass(frozen=True)
class AllowEntry:
    """One entry of ``ANJU_OUTBOUND_ALLOW``: a host, a host and port, or a URL prefix."""

    host: str
    port: int | None = None
    scheme: str | None = None  # URL prefix only
    path: str | None = None  # URL prefix only

    @classmethod
    def parse(cls, text: str) -> AllowEntry:
        text = text.strip()
        if not text:
            raise ValueError("empty outbound allow entry")
        if "://" in text:
            parts = urlsplit(text)
            scheme = parts.scheme.lower()
            if scheme not in DEFAULT_PORTS or not parts.hostname:
                raise ValueError(f"outbound allow entry {text!r}: expected http(s)://host[:port]/path")
            path = parts.path or "/"
            if _has_dot_segment(path):
                raise ValueError(f"outbound allow entry {text!r}: the path must not contain . or ..")
            return cls(normalize_host(parts.hostname), parts.port or DEFAULT_PORTS[scheme], scheme, path)
        host, port = _split_host_port(text)
        if not host or "/" in host or "@" in host:
            raise ValueError(f"outbound allow entry {text!r}: expected host, host:port or a URL prefix")
        return cls(normalize_host(host), port)

    def permits(self, *, scheme: str, host: str, port: int, path: str) -> bool:
        if host != self.host or (self.port is not None and port != self.port):
            return False
        if self.scheme is None or self.path is None:
            return True
        if scheme != self.scheme:
            return False
        decoded = unquote(path or "/")
        return not _has_dot_segment(decoded) and decoded.startswith(self.path)


def _split_host_port(text: str) -> tuple[str, int | None]:
    """ "host", "host:8000", "[::1]:8000", "::1" (a bare IPv6 address has no port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, _port(rest.removeprefix(":"), text) if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, _port(port, text)
    return text, None


def _port(value: str, text: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"outbound allow entry {text!r}: bad port")
    return int(value)


def _has_dot_segment(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.replace("\\", "/").split("/"))


@dataclass(frozen=True)
class OutboundPolicy:
    """The internal hosts an operator allows; everything else must be on the public internet."""

    allow: tuple[AllowEntry, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> OutboundPolicy:
        return cls(tuple(AllowEntry.parse(e) for e in entries if e.strip()))

    def permits(self, *, scheme: str, host: str, port: int, path: str = "/") -> bool:
        """Whether this target is one the operator named (then it may be internal)."""
        host = normalize_host(host)
        return any(e.permits(scheme=scheme, host=host, port=port, path=path) for e in self.allow)

    def names(self) -> frozenset[str]:
        """The host names (not addresses) the operator named: only these may resolve internally."""
        return frozenset(e.host for e in self.allow if literal_ip(e.host) is None)


def outbound_policy(settings: Settings) -> OutboundPolicy:
    """The policy of this deployment: ``outbound_allow``, plus in demo mode exactly the demo site
    this service serves (the demo's opinion sources crawl it), nothing else of the API."""
    from core.settings import Mode

    entries = list(settings.outbound_allow)
    if settings.mode is Mode.demo:
        entries.append(f"{settings.base_url.rstrip('/')}/demo-site/")
    return OutboundPolicy.parse(entries)


# --- the check ---------------------------------------------------------------------------------


def addresses_for(
    *, policy: OutboundPolicy, scheme: str, host: str, port: int | None, path: str = "/"
) -> list[IPAddress]:
    """The addresses to connect to for this target, every one of them checked. Raises
    OutboundRefused for an internal target the policy does not name, OutboundFailed when a name
    does not resolve."""
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise OutboundRefused(BAD_SCHEME)
    host = normalize_host(host or "")
    if not host:
        raise OutboundRefused("地址中没有主机名")
    port = port or DEFAULT_PORTS[scheme]
    permitted = policy.permits(scheme=scheme, host=host, port=port, path=path)
    literal = literal_ip(host)
    if literal is not None:
        if not permitted and not is_public(literal):
            raise OutboundRefused(REFUSED)
        return [literal]
    if not permitted and is_localhost_name(host):
        raise OutboundRefused(REFUSED)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise OutboundFailed(NOT_RESOLVED) from None
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise OutboundFailed(NOT_RESOLVED)
    if not permitted and not all(is_public(a) for a in found):
        log.warning("outbound request to %s refused: it resolves to an internal address", host)
        raise OutboundRefused(REFUSED)
    return found


def refusal(policy: OutboundPolicy, url: str) -> str | None:
    """Why this URL must not be requested, as far as that is known without DNS (the scheme, an
    internal IP literal in any spelling, a localhost name, a named internal host outside its
    entry); None: go on, and check what a name resolves to when it is resolved."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "地址格式不正确"
    scheme = parts.scheme.lower()
    if scheme not in HTTP_SCHEMES:
        return BAD_SCHEME
    if not parts.hostname:
        return "地址中没有主机名"
    host = normalize_host(parts.hostname)
    if policy.permits(scheme=scheme, host=host, port=port or DEFAULT_PORTS[scheme], path=parts.path or "/"):
        return None
    literal = literal_ip(host)
    if literal is not None:
        return None if is_public(literal) else REFUSED
    if is_localhost_name(host) or host in policy.names():
        # a host the operator named is reachable only as its entry says (that port, that prefix)
        return REFUSED
    return None


def check_url(url: str, *, policy: OutboundPolicy, field: str) -> str:
    """A URL someone is saving (a robot, a webhook, a crawl source), checked now as it will be
    checked again when it is used: InvalidInput naming ``field`` when it is not an http(s) URL or
    points inside. A name that does not resolve today is accepted (it is checked at send time)."""
    url = url.strip()
    parts = urlsplit(url)
    try:
        hostname, port = parts.hostname, parts.port
    except ValueError:
        raise InvalidInput(f"{field} 有误：地址格式不正确") from None
    if parts.scheme.lower() not in HTTP_SCHEMES or not hostname:
        raise InvalidInput(f"{field} 有误：{BAD_SCHEME}")
    try:
        addresses_for(policy=policy, scheme=parts.scheme, host=hostname, port=port, path=parts.path or "/")
    except OutboundRefused as exc:
        raise InvalidInput(f"{field} 有误：{exc.message}") from None
    except OutboundFailed:
        pass
    return url


# --- HTTP ----------------------------------------------------------------------------------------


def _pinned(request: httpx.Request, address: IPAddress) -> httpx.Request:
    """The request sent to ``address``: the name stays in the Host header and, for https, in SNI
    and the certificate check."""
    import httpx

    url = request.url
    extensions = dict(request.extensions)
    if url.scheme == "https" and literal_ip(url.host) is None:
        extensions["sni_hostname"] = url.host
    return httpx.Request(request.method, url.copy_with(host=str(address)), headers=request.headers,
                         stream=request.stream, extensions=extensions)  # fmt: skip


def _target(request: httpx.Request) -> dict[str, Any]:
    url = request.url
    if url.scheme not in HTTP_SCHEMES:
        raise OutboundRefused(BAD_SCHEME)
    return {"scheme": url.scheme, "host": url.host, "port": url.port, "path": url.path}


def _transport_class() -> Callable[[OutboundPolicy], httpx.BaseTransport]:
    import httpx

    class GuardedTransport(httpx.BaseTransport):
        """Checks every request (each redirect is one) and connects to the checked address."""

        def __init__(self, policy: OutboundPolicy) -> None:
            self.policy = policy
            # One pool per host name: a connection made (and TLS-verified) for one name is never
            # reused for another name that happens to share its address.
            self._pools: dict[str, httpx.HTTPTransport] = {}
            self._lock = threading.Lock()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            addresses = addresses_for(policy=self.policy, **_target(request))
            with self._lock:
                pool = self._pools.get(request.url.host) or self._pools.setdefault(
                    request.url.host, httpx.HTTPTransport()
                )
            failure: httpx.ConnectError | None = None
            for address in addresses[:TRIED_ADDRESSES]:
                try:
                    return pool.handle_request(_pinned(request, address))
                except httpx.ConnectError as exc:  # nothing was sent: the next address may answer
                    failure = exc
            assert failure is not None
            raise failure

        def close(self) -> None:
            with self._lock:
                pools, self._pools = list(self._pools.values()), {}
            for pool in pools:
                pool.close()

    return GuardedTransport


def _async_transport_class() -> Callable[[OutboundPolicy], httpx.AsyncBaseTransport]:
    import asyncio

    import httpx

    class AsyncGuardedTransport(httpx.AsyncBaseTransport):
        """GuardedTransport for async clients (the name is resolved in a thread)."""

        def __init__(self, policy: OutboundPolicy) -> None:
            self.policy = policy
            self._pools: dict[str, httpx.AsyncHTTPTransport] = {}

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            target = _target(request)
            addresses = await asyncio.to_thread(lambda: addresses_for(policy=self.policy, **target))
            pool = self._pools.get(request.url.host) or self._pools.setdefault(
                request.url.host, httpx.AsyncHTTPTransport()
            )
            failure: httpx.ConnectError | None = None
            for address in addresses[:TRIED_ADDRESSES]:
                try:
                    return await pool.handle_async_request(_pinned(request, address))
                except httpx.ConnectError as exc:
                    failure = exc
            assert failure is not None
            raise failure

        async def aclose(self) -> None:
            pools, self._pools = list(self._pools.values()), {}
            for pool in pools:
                await pool.aclose()

    return AsyncGuardedTransport


def http_client(policy: OutboundPolicy, *, timeout: float, follow_redirects: bool = False) -> httpx.Client:
    """An httpx client whose every request (and redirect) goes through the check. Proxies from
    the environment are not used: a proxy would resolve and connect on our behalf, unchecked."""
    import httpx

    return httpx.Client(
        transport=_transport_class()(policy),
        timeout=timeout,
        trust_env=False,
        follow_redirects=follow_redirects,
        max_redirects=5,
    )


def async_http_client(policy: OutboundPolicy, *, timeout: float) -> httpx.AsyncClient:
    """http_client for async code."""
    import httpx

    return httpx.AsyncClient(transport=_async_transport_class()(policy), timeout=timeout, trust_env=False,
                             max_redirects=5)  # fmt: skip


@dataclass(frozen=True)
class Reply:
    """A remote answer for the code that asked. ``body`` is for parsing (a JSON errcode), never
    for a message a person reads."""

    status: int
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def send(
    policy: OutboundPolicy,
    method: str,
    url: str,
    *,
    json: Any = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One request, redirects not followed (a webhook that redirects is answered with its 3xx).
    Raises OutboundRefused or OutboundFailed, whose messages carry no remote text; an answer
    larger than MAX_REPLY_BYTES is cut there."""
    import httpx

    why = refusal(policy, url)  # before httpx parses the URL: an odd spelling is refused as such
    if why is not None:
        raise OutboundRefused(why)
    try:
        if params:  # merged into the URL's own query (httpx's params= would replace it)
            url, params = str(httpx.URL(url).copy_merge_params(dict(params))), None
        with (
            http_client(policy, timeout=timeout) as client,
            client.stream(
                method, url, json=json, content=content, headers=headers, params=params
            ) as response,
        ):
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) >= MAX_REPLY_BYTES:
                    break
            return Reply(response.status_code, bytes(body[:MAX_REPLY_BYTES]))
    except httpx.TimeoutException:
        raise OutboundFailed(f"{timeout:g} 秒内没有响应", timed_out=True) from None
    except httpx.UnsupportedProtocol:
        raise OutboundRefused(BAD_SCHEME) from None
    except httpx.InvalidURL:
        raise OutboundRefused("地址格式不正确") from None
    except httpx.HTTPError:
        raise OutboundFailed(NOT_CONNECTED) from None


# --- SMTP ----------------------------------------------------------------------------------------


class _GuardedSocket(smtplib.SMTP):
    """Opens the SMTP connection to a checked address; ``self._host`` (the name) stays what
    STARTTLS and SMTPS verify the certificate against."""

    outbound_policy: OutboundPolicy = OutboundPolicy()
    outbound_scheme: str = "smtp"

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        addresses = addresses_for(
            policy=self.outbound_policy, scheme=self.outbound_scheme, host=host, port=port
        )
        failure: OSError | None = None
        for address in addresses[:TRIED_ADDRESSES]:
            try:
                return socket.create_connection((str(address), port), timeout, self.source_address)
            except OSError as exc:
                failure = exc
        assert failure is not None
        raise failure


class GuardedSMTP(_GuardedSocket):
    pass


class GuardedSMTPSSL(smtplib.SMTP_SSL, _GuardedSocket):
    outbound_scheme = "smtps"


def smtp_connection(
    policy: OutboundPolicy,
    *,
    scheme: str,
    host: str,
    port: int,
    timeout: float,
    context: ssl.SSLContext | None = None,
) -> smtplib.SMTP:
    """A connected SMTP (``smtp``) or SMTPS (``smtps``) client to a checked address; SMTPS
    verifies with ``context`` (default: the system's CAs, name checked)."""
    client: _GuardedSocket = (
        GuardedSMTPSSL(timeout=timeout, context=context or ssl.create_default_context())
        if scheme == "smtps"
        else GuardedSMTP(timeout=timeout)
    )
    client.outbound_policy = policy
    client._host = host  # type: ignore[attr-defined]  # what TLS checks the certificate against; only __init__ sets it
    client.connect(host, port)
    return client
