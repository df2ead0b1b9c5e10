"""Scrapy settings of the anju crawlers: polite by default (robots.txt, AutoThrottle, a delay per
domain, retries on 429/5xx, a size cap and a timeout). ``crawlers.runner.scrapy_settings`` adds
what depends on the source and the deployment (pipeline, seen pages, scrapy-redis frontier).
``scrapy.cfg`` points scrapy's own command line here, so ``scrapy list`` works too."""

BOT_NAME = "anju"
SPIDER_MODULES = ["crawlers.spiders"]
NEWSPIDER_MODULE = "crawlers.spiders"
USER_AGENT = "Mozilla/5.0 (compatible; anju-monitor/1.0; +https://anju.example/bot)"

ROBOTSTXT_OBEY = True
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 2.0
AUTOTHROTTLE_MAX_DELAY = 30.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
DOWNLOAD_DELAY = 2.0  # per domain, as public spiders of these platforms do (1–3 s)
DOWNLOAD_DELAY_JITTER = 0.5  # ±50 %, so requests do not tick like a clock
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 2

RETRY_ENABLED = True
RETRY_TIMES = 3
RETRY_HTTP_CODES = [429, 500, 502, 503, 504, 522, 524, 408]
DOWNLOAD_TIMEOUT = 30
DOWNLOAD_MAXSIZE = 5 * 1024 * 1024  # a page larger than 5 MB is not an article: dropped, counted
DOWNLOAD_WARNSIZE = 1024 * 1024
HTTPCACHE_ENABLED = False
COOKIES_ENABLED = True
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False  # no control port on a monitoring box
LOG_LEVEL = "INFO"
FEED_EXPORT_ENCODING = "utf-8"

DOWNLOADER_MIDDLEWARES = {
    # First of all: no request to an internal address (redirects and robots.txt come here too).
    "crawlers.outbound.OutboundGuard": 10,
    "crawlers.middlewares.SeenPages": 50,  # before anything is downloaded
    # A lookup GuardedResolver refused is a refusal, not a flaky DNS: before RetryMiddleware (550).
    "crawlers.outbound.RefusedLookups": 560,
}
# Names resolve through the outbound check: an internal answer fails the lookup (crawlers.outbound).
TWISTED_DNS_RESOLVER = "crawlers.outbound.GuardedResolver"
SPIDER_MIDDLEWARES: dict[str, int] = {}
ITEM_PIPELINES: dict[str, int] = {}
