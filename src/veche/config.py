"""Server configuration: one TOML file, documented defaults, `VECHE_*` environment overrides.

Environment variables override file values: `VECHE_SERVER_NAME=example.org`, nested keys
with a double underscore: `VECHE_DATABASE__URL=postgresql://...`. Values are parsed as JSON
when they parse, else taken as strings.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from veche.core.identifiers import InvalidIdentifier, parse_server_name


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListenConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8008, ge=0, le=65535)
    # Reverse proxies (CIDRs) whose X-Forwarded-For is believed: the client is the right-most
    # address in it that is not one of these. Empty: the socket's peer is the client.
    trusted_proxies: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        try:
            return [ipaddress.ip_network(v, strict=False) if isinstance(v, str) else v
                    for v in value]
        except ValueError as e:
            raise ValueError(f"not an address or CIDR range: {e}") from None
    # A request head (request line and headers) must arrive within this, or the connection closes.
    header_timeout_s: float = Field(30.0, gt=0)
    # An idle keep-alive connection closes after this; longer than a reverse proxy's (nginx: 60 s).
    keepalive_timeout_s: float = Field(75.0, gt=0)
    # A JSON request body must arrive within this; an upload may stall at most this long.
    body_timeout_s: float = Field(60.0, gt=0)
    # On SIGTERM: requests being handled, events being stored and queued application-service
    # transactions get this long to finish before the process exits.
    shutdown_grace_s: float = Field(10.0, ge=0)


class MetricsConfig(_Section):
    # Prometheus metrics at http://<bind_address>:<port>/metrics, never on the client listener.
    enabled: bool = False
    bind_address: str = "127.0.0.1"
    port: int = Field(9100, ge=1, le=65535)


class DatabaseConfig(_Section):
    # Empty means SQLite at <data_dir>/veche.db.
    url: str = ""
    # SQLite only: "NORMAL" survives process crashes (WAL); "FULL" also survives power loss.
    sqlite_synchronous: str = Field("NORMAL", pattern="^(OFF|NORMAL|FULL|EXTRA)$")
    pool_size: int = Field(8, ge=1, le=200)


class RegistrationConfig(_Section):
    enabled: bool = False
    # When set, registration needs an m.login.registration_token (created by the CLI).
    require_token: bool = False


class RateLimit(_Section):
    per_second: float = Field(gt=0)
    burst: int = Field(ge=1)


class RateLimitsConfig(_Section):
    enabled: bool = True
    message: RateLimit = RateLimit(per_second=10, burst=50)
    # Every login attempt, per client address.
    login: RateLimit = RateLimit(per_second=0.2, burst=5)
    # Failed logins to one account from one address: a stranger's guesses use up only this.
    login_failures: RateLimit = RateLimit(per_second=0.02, burst=5)
    # Failed logins to one account from all addresses together, against guessing from many.
    # Refilling faster than login_failures, no single address can use it up and lock the
    # owner out; only many addresses guessing together can.
    login_failures_account: RateLimit = RateLimit(per_second=0.1, burst=50)
    registration: RateLimit = RateLimit(per_second=0.2, burst=5)
    room_create: RateLimit = RateLimit(per_second=0.5, burst=10)
    invite: RateLimit = RateLimit(per_second=0.5, burst=20)
    join: RateLimit = RateLimit(per_second=1, burst=20)
    profile: RateLimit = RateLimit(per_second=1, burst=10)
    report: RateLimit = RateLimit(per_second=0.1, burst=5)
    media_upload: RateLimit = RateLimit(per_second=1, burst=20)
    search: RateLimit = RateLimit(per_second=1, burst=10)
    openid: RateLimit = RateLimit(per_second=0.5, burst=20)
    # Signed requests from one other server.
    federation: RateLimit = RateLimit(per_second=50, burst=500)
    # Key requests (/_matrix/key/v2/*) per client address: they may make us fetch keys.
    key_query: RateLimit = RateLimit(per_second=2, burst=50)


class LimitsConfig(_Section):
    max_json_body_bytes: int = Field(1024 * 1024, ge=1024)
    max_sync_timeout_ms: int = Field(120_000, ge=0)
    # A /search still running after this long is stopped (its query runs off the event loop).
    search_timeout_ms: int = Field(10_000, ge=1)


class PresenceConfig(_Section):
    # An online user who does nothing (sends nothing) for this long becomes unavailable.
    idle_after_ms: int = Field(5 * 60_000, ge=1000)
    # A user none of whose clients has synced for this long becomes offline.
    offline_after_ms: int = Field(30_000, ge=1000)
    # Share local users' presence with the other servers of their rooms, and show remote
    # users' presence from theirs.
    federate: bool = True


class UrlPreviewConfig(_Section):
    # Off by default: previews make the server fetch URLs that users post.
    enabled: bool = False
    # CIDRs that may be fetched even though they are private/loopback/reserved.
    ip_range_allowlist: list[str] = []
    # CIDRs never fetched, on top of the built-in private/reserved ranges.
    ip_range_blacklist: list[str] = []
    max_response_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    timeout_s: float = Field(10.0, gt=0, le=120)


class MediaConfig(_Section):
    max_upload_size: int = Field(50 * 1024 * 1024, ge=1)
    # Images with more pixels than this are never decoded (decompression bombs).
    max_image_pixels: int = Field(32 * 1024 * 1024, ge=1)
    # The deprecated unauthenticated /_matrix/media/v3 download/thumbnail/config/preview routes.
    enable_legacy_media: bool = True
    # Spec 1.12's freeze: those legacy routes serve only media uploaded before this version
    # first started; newer media only through the authenticated /_matrix/client/v1/media.
    freeze_legacy_media: bool = True
    # Empty means <data_dir>/media.
    store_path: str = ""
    # An /create'd media ID that gets no content within this long is freed.
    unused_expiry_ms: int = Field(24 * 3600 * 1000, ge=1000)
    max_pending_uploads: int = Field(10, ge=1)
    url_preview: UrlPreviewConfig = UrlPreviewConfig()


class PushConfig(_Section):
    # Off by default: delivering a push sends who wrote to whom (and, for unencrypted rooms,
    # what) to the push gateway an app registers, often a server abroad. Pushers are kept
    # either way, so turning this on later needs nothing from users.
    enabled: bool = False
    # Gateways on private/loopback ranges are refused unless listed here, e.g. a Sygnal or
    # ntfy on your own network: ["10.1.0.0/16"].
    ip_range_allowlist: list[str] = []
    ip_range_blacklist: list[str] = []
    # Full pushes carry unencrypted events' content unless this is false (apps asking for
    # format "event_id_only" never get it).
    include_content: bool = True
    timeout_s: float = Field(10.0, gt=0, le=120)


class SupportContact(_Section):
    # "m.role.admin", "m.role.security", or a namespaced role of your own.
    role: str
    matrix_id: str = ""
    email_address: str = ""

    @model_validator(mode="after")
    def _reachable(self) -> SupportContact:
        if not self.email_address and not self.matrix_id:
            raise ValueError("a contact needs a matrix_id or an email_address")
        return self


class SupportConfig(_Section):
    # Published at /.well-known/matrix/support, where clients show them to users who need help.
    contacts: list[SupportContact] = []
    support_page: str = ""


class ServerNoticesConfig(_Section):
    # The account that sends server notices (made on first use). Empty: notices are off.
    system_mxid_localpart: str = Field("notices", pattern=r"^[a-z0-9._=/+-]*$", max_length=200)
    system_mxid_display_name: str = "Server Notices"
    room_name: str = "Server Notices"


class TurnConfig(_Section):
    # TURN servers for VoIP calls, e.g. ["turn:turn.example.org:3478?transport=udp"].
    uris: list[str] = []
    # coturn's static-auth-secret (use-auth-secret): time-limited credentials per user.
    shared_secret: str = ""
    # Fixed credentials instead, for a TURN server without the shared-secret scheme.
    username: str = ""
    password: str = ""
    user_lifetime_s: int = Field(86400, ge=60)

    @field_validator("uris")
    @classmethod
    def _turn_uris(cls, uris: list[str]) -> list[str]:
        bad = [u for u in uris if not u.startswith(("turn:", "turns:"))]
        if bad:
            raise ValueError(f"TURN URIs must start with turn: or turns: ({', '.join(bad)})")
        return uris


class TrustedKeyServer(_Section):
    server_name: str
    # Pinned keys of the notary ({"ed25519:abc": "<unpadded base64>"}); empty: fetched from it.
    verify_keys: dict[str, str] = {}

    @field_validator("server_name")
    @classmethod
    def _name(cls, name: str) -> str:
        return _valid_server_name(name)


class FederationConfig(_Section):
    # false: a closed server, no federation or key routes and no outbound federation requests.
    enabled: bool = True
    # With [tls] set, the federation and key APIs are also served over TLS on this port
    # (listen.host); 0: only on [listen], with TLS done by a reverse proxy.
    tls_port: int = Field(8448, ge=0, le=65535)
    # Extra CA certificates (PEM) trusted for outbound federation, e.g. an intranet's own PKI.
    ca_file: str = ""
    # Peers on private, loopback or other non-global addresses are refused unless listed here.
    ip_range_allowlist: list[str] = []
    # When not empty, federate only with these server names.
    domain_allowlist: list[str] = []
    # Served as {"m.server": ...} at /.well-known/matrix/server, delegating federation for
    # server_name to this host[:port]. Empty: no delegation (404).
    well_known_server: str = ""
    # Notaries asked for a server's keys when the server itself cannot be asked. None by default.
    trusted_key_servers: list[TrustedKeyServer] = []

    @field_validator("ip_range_allowlist")
    @classmethod
    def _ranges(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"not an address or CIDR range: {cidr!r}") from None
        return value

    @field_validator("domain_allowlist")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        return [_valid_server_name(name) for name in value]

    @field_validator("well_known_server")
    @classmethod
    def _delegated(cls, value: str) -> str:
        return _valid_server_name(value) if value else value


class TlsConfig(_Section):
    # PEM files; both or neither. Read at start.
    certificate_path: str = ""
    private_key_path: str = ""

    @model_validator(mode="after")
    def _both(self) -> TlsConfig:
        if bool(self.certificate_path) != bool(self.private_key_path):
            raise ValueError("set both certificate_path and private_key_path, or neither")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.certificate_path)


def _valid_server_name(name: str) -> str:
    try:
        _, port = parse_server_name(name)
    except InvalidIdentifier as e:
        raise ValueError(f"not a valid server name (host[:port]): {e}") from None
    if port is not None and not 0 < port <= 65535:
        raise ValueError(f"not a valid server name (host[:port]): bad port in {name!r}")
    return name


class WebClientConfig(_Section):
    # Serve the bundled web client at `/`; false: `/` only says the server is running.
    enabled: bool = True


class BusConfig(_Section):
    # NATS server shared by every process of a scale-out deployment (README "Many processes"),
    # e.g. "nats://10.0.0.5:4222". Empty: a single process, as on SQLite.
    url: str = ""
    # This process's name among them (`veche serve --worker-name`); unique per process.
    worker_name: str = Field("", pattern=r"^[A-Za-z0-9._-]*$", max_length=64)

    @model_validator(mode="after")
    def _named(self) -> BusConfig:
        if self.url and not self.url.startswith(("nats://", "tls://")):
            raise ValueError("url must be nats://host:port or tls://host:port")
        return self


class Config(_Section):
    server_name: str = "localhost:8008"
    # Where clients reach us, e.g. "https://matrix.example.org/". Defaults to http://<server_name>/.
    public_baseurl: str = ""
    data_dir: str = "veche-data"
    # Development mode: open registration (m.login.dummy) and no rate limits.
    dev: bool = False
    default_room_version: str = "12"
    listen: ListenConfig = ListenConfig()
    database: DatabaseConfig = DatabaseConfig()
    registration: RegistrationConfig = RegistrationConfig()
    rate_limits: RateLimitsConfig = RateLimitsConfig()
    limits: LimitsConfig = LimitsConfig()
    presence: PresenceConfig = PresenceConfig()
    media: MediaConfig = MediaConfig()
    turn: TurnConfig = TurnConfig()
    push: PushConfig = PushConfig()
    support: SupportConfig = SupportConfig()
    server_notices: ServerNoticesConfig = ServerNoticesConfig()
    federation: FederationConfig = FederationConfig()
    tls: TlsConfig = TlsConfig()
    metrics: MetricsConfig = MetricsConfig()
    web_client: WebClientConfig = WebClientConfig()
    bus: BusConfig = BusConfig()
    # Registration files (YAML) of application services: bridges and bots.
    app_service_config_files: list[str] = []
    access_token_lifetime_ms: int | None = Field(None, ge=60_000)

    @field_validator("server_name")
    @classmethod
    def _server_name_grammar(cls, name: str) -> str:
        # It becomes part of every user and room ID: a bad one cannot be fixed later.
        return _valid_server_name(name)

    @property
    def base_url(self) -> str:
        return (self.public_baseurl or f"http://{self.server_name}").rstrip("/") + "/"

    @model_validator(mode="after")
    def _bus_needs_postgres(self) -> Config:
        if self.bus.url and not self.database.url.startswith(("postgresql://", "postgres://")):
            raise ValueError("[bus] url needs a PostgreSQL database (set [database] url): the"
                             " processes share it; SQLite serves one process only")
        return self

    @property
    def clustered(self) -> bool:
        return bool(self.bus.url)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{Path(self.data_dir).resolve() / 'veche.db'}"

    @property
    def registration_open(self) -> bool:
        return self.dev or self.registration.enabled

    @property
    def rate_limiting(self) -> bool:
        return self.rate_limits.enabled and not self.dev


class ConfigError(Exception):
    pass


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith("VECHE_") or name in ("VECHE_CONFIG",):
            continue
        path = name[len("VECHE_") :].lower().split("__")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def load_config(
    path: str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Read the file (if any), then the environment, then explicit overrides (CLI flags)."""
    data: dict[str, Any] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {path}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from e
    _merge(data, _env_overrides(dict(os.environ if environ is None else environ)))
    _merge(data, overrides or {})
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from e


# The sample `veche config` writes (every key with its default), kept as a TOML file of its own.
SAMPLE_CONFIG = (Path(__file__).parent / "sample_config.toml").read_text(encoding="utf-8")
