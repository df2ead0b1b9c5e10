"""The spiders, one per source kind. Each reads its source's configuration (``SourceSpec``) and
yields ``sentiment.service.CrawledPost`` items; the pipeline judges and stores them."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crawlers.spiders.base import SourceSpider

# kind → "module:Class", imported only when a crawl of that kind starts
SPIDERS = {
    "rss": "crawlers.spiders.rss:FeedSpider",
    "generic": "crawlers.spiders.generic:GenericSpider",
    "weibo": "crawlers.spiders.weibo:WeiboSpider",
    "tieba": "crawlers.spiders.tieba:TiebaSpider",
    "tousu": "crawlers.spiders.tousu:TousuSpider",
    "liuyan": "crawlers.spiders.liuyan:LiuyanSpider",
}


def spider_class(kind: str) -> type[SourceSpider]:
    try:
        module, name = SPIDERS[kind].split(":")
    except KeyError:
        raise ValueError(f"no spider for source kind {kind!r}") from None
    cls: type[SourceSpider] = getattr(import_module(module), name)
    return cls
