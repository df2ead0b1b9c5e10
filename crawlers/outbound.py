"""The outbound check (core.outbound) in scrapy's downloader, for every request a crawl makes:
start pages, links found on pages, redirects, robots.txt, a source's proxy.

Two parts, because scrapy resolves names itself, inside Twisted:

- ``OutboundGuard`` (downloader middleware, first in line): refuses what it can tell without DNS:
  another scheme than http(s) (``file://``, ``ftp://``, ``s3://``, ``data:``), an internal IP
  literal in any spelling, ``localhost`` names, a named internal host outside its allow entry,
  and a source's proxy on an internal address. A redirect is a new request and comes here again.
- ``GuardedResolver`` (``TWISTED_DNS_RESOLVER``): every name the crawl connects to is resolved
  here; an internal answer fails the lookup unless the operator named that host. Twisted connects
  to the address this returns, so there is no second lookup to rebind. scrapy sees a failed
  lookup: ``RefusedLookups`` (just before RetryMiddleware) tells it apart and stops the retries,
  and the guard refuses later requests to that name without asking DNS again.

Refused requests are counted (``anju/outbound_refused``) and explained in 试采集's notes.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.resolver import CachingThreadedResolver
from twisted.internet.defer import Deferred
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import IResolverSimple
from zope.interface import implementer

from core.outbound import REFUSED, OutboundPolicy, is_public, normalize_host, outbound_policy, refusal

log = logging.getLogger(__name__)

REFUSED_STAT = "anju/outbound_refused"
# robots.txt of a host whose pages are allowed only under a prefix (the demo site under the API):
# refused too, but not worth a note in 试采集 (scrapy then crawls as if there were none).
REFUSED_ROBOTS_STAT = "anju/outbound_refused_robotstxt"
# Failed downloads (counted in downloader/exception_count) that were in fact refused lookups.
REFUSED_LOOKUP_STAT = "anju/outbound_refused_lookups"


class OutboundRefusedError(IgnoreRequest):
    """A request the outbound check refused (an IgnoreRequest: not retried, not an error page)."""


class RefusedLookup(DNSLookupError):
    """GuardedResolver's answer for a name that resolves inside (a DNSLookupError, so Twisted
    reports it as a failed lookup, not as a crash)."""


def crawl_policy(values: Any) -> OutboundPolicy:
    """The policy a crawl runs under: ``ANJU_OUTBOUND_POLICY`` (set by crawlers.runner), else the
    one of the anju settings the crawl was started with."""
    policy = values.get("ANJU_OUTBOUND_POLICY")
    if isinstance(policy, OutboundPolicy):
        return policy
    from crawlers.runner import anju_settings

    return outbound_policy(anju_settings(values))


class OutboundGuard:
    """Downloader middleware, first in line: see the module's docstring."""

    def __init__(self, crawler: Crawler, policy: OutboundPolicy) -> None:
        self.crawler = crawler
        self.policy = policy

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> OutboundGuard:
        return cls(crawler, crawl_policy(crawler.settings))

    def process_request(self, request: Request) -> None:
        why = refusal(self.policy, request.url)
        if why is None and _host(request.url) in _refused_names():
            why = REFUSED  # it resolved inside a moment ago: DNS is not asked again
        proxy = request.meta.get("proxy")
        if why is None and proxy:
            why = refusal(self.policy, str(proxy))
            why = f"代理{why}" if why else None
        if why is None:
            return None
        _count(self.crawler, request)
        log.warning("crawl request refused (%s): %s", why, request.url)
        raise OutboundRefusedError(f"{why}: {request.url}")


class RefusedLookups:
    """Downloader middleware placed just before RetryMiddleware (550) sees exceptions: a download
    that failed because GuardedResolver refused its name is a refusal, counted as one and not
    retried (scrapy reports it as a host it could not resolve)."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RefusedLookups:
        return cls(crawler)

    def process_exception(self, request: Request, exception: BaseException) -> None:
        if isinstance(exception, IgnoreRequest) or _host(request.url) not in _refused_names():
            return None
        _count(self.crawler, request)
        if self.crawler.stats is not None:
            self.crawler.stats.inc_value(REFUSED_LOOKUP_STAT)
        raise OutboundRefusedError(f"{REFUSED}: {request.url}")


@implementer(IResolverSimple)
class GuardedResolver(CachingThreadedResolver):
    """scrapy's caching resolver, refusing internal answers for names the operator did not name."""

    policy: OutboundPolicy = OutboundPolicy()
    refused: set[str]  # names that resolved inside during this crawl

    @classmethod
    def from_crawler(cls, crawler: Crawler, reactor: Any) -> GuardedResolver:
        resolver = super().from_crawler(crawler, reactor)
        resolver.policy = crawl_policy(crawler.settings)
        resolver.refused = set()
        return resolver

    def getHostByName(self, name: str, timeout: Sequence[int] = ()) -> Deferred[str]:
        deferred = super().getHostByName(name, timeout)
        # Hosts the operator named may be internal; the middleware has checked the port and prefix.
        if normalize_host(name) in {entry.host for entry in self.policy.allow}:
            return deferred
        deferred.addCallback(self._public_only, name)
        return deferred

    def _public_only(self, address: str, name: str) -> str:
        if not is_public(ipaddress.ip_address(address)):
            self.refused.add(normalize_host(name))
            log.warning("crawl lookup refused: %s resolves to an internal address", name)
            raise RefusedLookup(name)
        return address


def _count(crawler: Crawler, request: Request) -> None:
    robots = request.meta.get("dont_obey_robotstxt") and urlsplit(request.url).path == "/robots.txt"
    if crawler.stats is not None:
        crawler.stats.inc_value(REFUSED_ROBOTS_STAT if robots else REFUSED_STAT)


def _host(url: str) -> str:
    try:
        return normalize_host(urlsplit(url).hostname or "")
    except ValueError:
        return ""


def _refused_names() -> set[str]:
    """The names the installed GuardedResolver refused in this crawl."""
    from twisted.internet import reactor

    resolver = getattr(reactor, "resolver", None)
    return resolver.refused if isinstance(resolver, GuardedResolver) else set()
