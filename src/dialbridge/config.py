"""dialbridge configuration: one TOML file plus environment overrides.

Theory of operation
-------------------
* The file is ``dialbridge.toml``; its path comes from ``--config`` or ``DIALBRIDGE_CONFIG``.
  No file at all is fine: every key has a default, so ``dialbridge serve`` runs embedded.
* Any key can be overridden from the environment as ``DIALBRIDGE_<SECTION>__<KEY>``
  (``DIALBRIDGE_HTTP__PORT=8080``); environment beats the file.
* Everything is validated before anything starts. An unknown key or a bad value raises
  :class:`ConfigError`, whose message names the dotted key and the reason, so start-up stops
  with a line an admin can act on.

Sections: ``http``, ``store``, ``mapper``, ``numbers``, ``dialout`` (the Meet web services) and
``sip``, ``users``, ``trunks``, ``jigasi``, ``ivr``, ``limits``, ``routes`` (the call engine,
docs/calls.md); ``admin`` and ``log`` (operations, docs/operations.md).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

CONFIG_ENV = "DIALBRIDGE_CONFIG"
ENV_PREFIX = "DIALBRIDGE_"


class ConfigError(Exception):
    """The configuration cannot be used; ``str(err)`` names the key(s) and the reason."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpConfig(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8088
    # Origins allowed by CORS (the Meet origins, e.g. "https://meet.example.com"), or ["*"].
    # Empty: no CORS headers; serve our paths on the Meet origin through nginx instead.
    cors_origins: list[str] = []

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_urls(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(
                    f"{origin!r} is not an origin like 'https://meet.example.com' or '*'"
                )
        return value


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/dialbridge")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dialbridge"


class StoreConfig(_Section):
    # SQLAlchemy URL. Empty: an embedded SQLite file in data_dir. Plain "sqlite:///..." and
    # "postgresql://..." are accepted; the async drivers (aiosqlite, asyncpg) are chosen for you.
    url: str = ""
    data_dir: Path = Field(default_factory=default_data_dir)

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value and not re.match(r"^(sqlite|postgresql|postgres)(\+\w+)?://", value):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @property
    def effective_url(self) -> str:
        url = self.url or f"sqlite:///{self.data_dir / 'dialbridge.sqlite3'}"
        scheme, rest = url.split("://", 1)
        backend = scheme.split("+", 1)[0]
        if backend == "sqlite":
            return f"sqlite+aiosqlite://{rest}"
        return f"postgresql+asyncpg://{rest}"


class MapperConfig(_Section):
    pin_length: Annotated[int, Field(ge=6, le=13)] = 10
    # A mapping expires this many days after its last use (a lookup either way, or a dial-in).
    expire_days: Annotated[float, Field(gt=0)] = 30
    # An expired PIN is not handed to another room for this many days.
    quarantine_days: Annotated[float, Field(ge=0)] = 30
    # Refreshing "last use" is a write; do it at most once per this many seconds per mapping.
    refresh_interval_seconds: Annotated[float, Field(ge=0)] = 300
    # MUC domains we serve (e.g. "conference.meet.example.com"). Empty: any domain.
    allowed_domains: list[str] = []
    # With allowed_domains set, also accept tenant MUCs "conference.<tenant>.<rest>" for an
    # allowed "conference.<rest>".
    allow_tenants: bool = True

    @field_validator("allowed_domains")
    @classmethod
    def _lower_domains(cls, value: list[str]) -> list[str]:
        return [d.strip().lower() for d in value]


class NumberEntry(_Section):
    number: str
    country: str | None = None  # ISO 3166 alpha-2, or SIP / SIP_AUDIO_ONLY; derived when absent
    toll_free: bool | None = None  # derived from the numbering plan when absent
    default: bool = False
    # Only listed for rooms of these tenants; empty: listed for rooms without a tenant-specific list.
    tenants: list[str] = []
    label: str | None = None  # shown instead of the formatted number (e.g. a SIP address)
    language: str | None = None  # IVR language for calls to this number (default: ivr.language)

    @field_validator("tenants")
    @classmethod
    def _lower_tenants(cls, value: list[str]) -> list[str]:
        return [t.lower() for t in value]

    @model_validator(mode="after")
    def _number_is_possible(self) -> NumberEntry:
        from dialbridge.phone_numbers import describe

        describe(self)  # raises ValueError naming the number
        return self


class NumbersConfig(_Section):
    format: Literal["array", "legacy"] = "array"
    entries: list[NumberEntry] = []
    message: str = "Phone numbers available."


class DialoutConfig(_Section):
    # Region assumed for numbers written without a country code.
    default_region: str = "US"
    # Default deny: a destination must be in an allowed country or match an allow prefix.
    allowed_countries: list[str] = []
    allow_prefixes: list[str] = []  # E.164 prefixes, e.g. "+4930"
    deny_prefixes: list[str] = []  # checked first, e.g. "+49900"
    refuse_premium_rate: bool = True
    refuse_shared_cost: bool = True
    refuse_invalid: bool = True

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        import phonenumbers

        value = value.upper()
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phonenumbers knows (ISO 3166 alpha-2)")
        return value

    @field_validator("allowed_countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        import phonenumbers

        out = []
        for country in value:
            country = country.upper()
            if country not in phonenumbers.SUPPORTED_REGIONS:
                raise ValueError(f"{country!r} is not an ISO 3166 alpha-2 region")
            out.append(country)
        return out

    @field_validator("allow_prefixes", "deny_prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not re.fullmatch(r"\+\d{1,15}", prefix):
                raise ValueError(f"{prefix!r} is not an E.164 prefix like '+4930'")
        return value


# -- operations (issue 6) -------------------------------------------------------------------------


class AdminConfig(_Section):
    # The admin page (/admin) and its API (/admin/api/...) ask for this token (typed into the
    # page, or sent as "Authorization: Bearer <token>"). Empty: the admin page is off.
    token: str = ""
    # /metrics (Prometheus) open to anyone who reaches the HTTP listener, or only with the token.
    metrics_public: bool = True

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value) < 16:
            raise ValueError("use at least 16 characters (e.g. `openssl rand -hex 16`)")
        return value


class LogConfig(_Section):
    # "json": one JSON object per line with the call ID (for journald/Loki); "text": readable.
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"


# -- the call engine (issue 5) -------------------------------------------------------------------


def _host_port(value: str, default_port: int) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, default_port
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host, int(port)


class SipConfig(_Section):
    # Listeners as "HOST:PORT". Jigasi registers here and we call it back over the same flow.
    udp: list[str] = ["0.0.0.0:5060"]
    tcp: list[str] = []
    tls: list[str] = []
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Host written into Via/Contact/SDP when listening on a wildcard address.
    advertised_host: str | None = None
    # Our SIP domain: From host of the calls we place, and the digest realm.
    domain: str = "dialbridge.invalid"
    # RTP: the address our media sockets bind to (and put in SDP), and the port range.
    rtp_host: str = "127.0.0.1"
    # Clear of the videobridge's UDP 10000 and Jigasi's own 10000-20000 on a Jitsi host.
    rtp_port_low: Annotated[int, Field(ge=1024, le=65534)] = 40000
    rtp_port_high: Annotated[int, Field(ge=1025, le=65535)] = 49999
    # Registrations survive a restart in this JSON file ("" = keep them in memory only).
    bindings_file: str = ""
    # Requests per second (and burst) one source IP may send before we drop them silently.
    flood_rate: Annotated[float, Field(gt=0)] = 50
    flood_burst: Annotated[float, Field(gt=0)] = 200
    # Digest algorithms the registrar challenges with, preferred first. MD5 alone by default:
    # Jigasi answers MD5 only, and SIPp 3.6 / baresip 1.0 fail on a SHA-256 challenge.
    digest_algorithms: list[Literal["MD5", "SHA-256"]] = ["MD5"]

    @field_validator("udp", "tcp", "tls")
    @classmethod
    def _listeners(cls, value: list[str]) -> list[str]:
        for item in value:
            _host_port(item, 5060)
        return value

    def listeners(self, kind: str) -> list[tuple[str, int]]:
        default = 5061 if kind == "tls" else 5060
        return [_host_port(item, default) for item in getattr(self, kind)]

    @model_validator(mode="after")
    def _tls_needs_files(self) -> SipConfig:
        if self.tls and not (self.tls_cert and self.tls_key):
            raise ValueError("tls listeners need tls_cert and tls_key")
        if self.rtp_port_low >= self.rtp_port_high:
            raise ValueError("rtp_port_low must be below rtp_port_high")
        return self


class UserEntry(_Section):
    """A SIP account that registers with us (Jigasi) and authenticates with digest."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._~+-]+$")]
    password: Annotated[str, Field(min_length=8)]


class TrunkEntry(_Section):
    """A PSTN trunk: calls from its networks arrive as dial-in; dial-out goes to its host."""

    name: Annotated[str, Field(min_length=1)]
    # Sources whose INVITEs are this trunk's (no digest asked).
    networks: list[str] = []
    # Where dial-out INVITEs go ("" = this trunk only receives calls).
    host: str = ""
    port: Annotated[int, Field(ge=1, le=65535)] = 5060
    transport: Literal["udp", "tcp", "tls"] = "udp"
    # Digest credentials, used when the trunk challenges our INVITE (401/407).
    username: str | None = None
    password: str | None = None
    # Request-URI user prefix for dial-out (some carriers want "+" stripped or a tech prefix).
    strip_plus: bool = False
    prefix: str = ""
    # Seconds a dialled number may ring before we give up (→ 408 towards Jigasi).
    ring_timeout: Annotated[float, Field(gt=0)] = 60

    @field_validator("networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        import ipaddress

        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a network like 198.51.100.0/24") from None
        return value


class JigasiConfig(_Section):
    # The account Jigasi registers as (one of [[users]]). Dial-in calls go to its contacts.
    user: str = "jigasi"
    # Header names, exactly as the Jigasi account's JITSI_MEET_*_HEADER_NAME properties say
    # (jigasi-protocol.md §1.2). Defaults are Jigasi's own; docker-jitsi-meet and Jitsi's
    # production use X-Room-Name, X-Room-Pass, X-Domain-Base, X-Domain-Tenant.
    room_header: str = "Jitsi-Conference-Room"
    password_header: str = "Jitsi-Conference-Room-Pass"
    domain_base_header: str = "Jitsi-Conference-Domain-Base"
    tenant_header: str = "Jitsi-Conference-Domain-Tenant"
    # Sent only when set: the Meet domain (e.g. "meet.example.com"), not the reference's "true".
    domain_base: str = ""
    # Send the tenant header for tenant rooms (room@conference.<tenant>.<domain>).
    send_tenant: bool = False
    # From display name on dial-in: {caller} is the caller's number (masked unless
    # mask_caller = false), {did} the number dialled. It becomes the name in the meeting.
    display_name: str = "{caller}"
    mask_caller: bool = True
    # Jigasi answers only when the conference session starts (§1.4): allow this long.
    answer_timeout: Annotated[float, Field(gt=0)] = 30
    # Request-URI user of Jigasi's SIP health check (org.jitsi.jigasi.HEALTH_CHECK_SIP_URI).
    health_check_user: str = "healthcheck"

    @field_validator("room_header", "password_header", "domain_base_header", "tenant_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9!%*_+`'~.-]+", value):
            raise ValueError(f"{value!r} is not a SIP header name")
        return value


class IvrConfig(_Section):
    language: str = "en"
    # Where PINs are looked up: "" = our own store; else a conference mapper URL
    # (e.g. "https://api.jitsi.net/conferenceMapper"), asked with ?<mapper_param>=<PIN>.
    mapper_url: str = ""
    mapper_param: Literal["id", "cid"] = "id"
    mapper_timeout: Annotated[float, Field(gt=0)] = 3
    pin_max_digits: Annotated[int, Field(ge=1, le=32)] = 13
    pin_timeout: Annotated[float, Field(gt=0)] = 10  # seconds to finish the PIN with #
    password_max_digits: Annotated[int, Field(ge=1, le=64)] = 32
    password_timeout: Annotated[float, Field(gt=0)] = 10
    # PIN attempts per call (an unknown PIN or a failed join counts), then goodbye.
    max_pin_attempts: Annotated[int, Field(ge=1)] = 3
    # Prompts without any input before goodbye.
    max_no_input: Annotated[int, Field(ge=1)] = 3
    # Say "unknown PIN" at once instead of after the password step (tells a guesser which
    # PINs exist; off by default).
    reveal_unknown_pin: bool = False
    # Tone the caller hears while Jigasi joins: a name from dialbridge.media.playback.TONES.
    ringback_tone: str = "ringback_eu"
    # Rendered prompts are cached here ("" = <store.data_dir>/prompts).
    prompt_dir: str = ""
    # Admin recordings (<dir>/<language>/<key>.wav) that take precedence over espeak-ng.
    prompt_override_dir: str = ""
    # Languages to render prompts for ([] = ivr.language, every number's language, en, de).
    languages: list[str] = []
    # In-call key map (docs/in-call.md): control → key sequence; "" disables a control.
    keys: dict[Literal["mute_toggle", "raise_hand", "help"], str] = {
        "mute_toggle": "*6",
        "raise_hand": "*9",
        "help": "*1",
    }
    # Also mute in our own bridge (works whatever Jigasi's mode, jigasi-protocol.md §4.4).
    local_mute: bool = True
    # Say the mute state and its key when the caller joins the meeting.
    announce_in_call: bool = True
    # Longest wait for Jigasi's muteResponse (it may take ~15 s, jigasi-protocol.md §4.1).
    mute_response_timeout: Annotated[float, Field(gt=0)] = 20

    @field_validator("keys")
    @classmethod
    def _key_sequences(cls, value: dict[str, str]) -> dict[str, str]:
        sequences = [seq for seq in value.values() if seq]
        for seq in sequences:
            if not re.fullmatch(r"[0-9*#A-D]{1,8}", seq):
                raise ValueError(f"{seq!r} is not a key sequence of 0-9 * # A-D")
        for a in sequences:
            for b in sequences:
                if a != b and b.startswith(a):
                    raise ValueError(f"key sequence {a!r} is a prefix of {b!r}")
        if len(set(sequences)) != len(sequences):
            raise ValueError("two controls share one key sequence")
        return value


class PinGuardConfig(_Section):
    """Failed PIN attempts, counted in the store over sliding windows (issue 5 §8)."""

    window_seconds: Annotated[float, Field(gt=0)] = 3600
    # Per caller number: past delay_after failures each attempt waits delay_seconds more
    # (up to max_delay_seconds); at refuse_after the caller is refused until failures age out.
    delay_after: Annotated[int, Field(ge=0)] = 3
    refuse_after: Annotated[int, Field(ge=1)] = 10
    delay_seconds: Annotated[float, Field(ge=0)] = 2
    max_delay_seconds: Annotated[float, Field(ge=0)] = 10
    # All callers together (a distributed guess): the same, with their own thresholds.
    global_window_seconds: Annotated[float, Field(gt=0)] = 600
    global_delay_after: Annotated[int, Field(ge=0)] = 50
    global_refuse_after: Annotated[int, Field(ge=1)] = 500


class LimitsConfig(_Section):
    max_call_seconds: Annotated[float, Field(gt=0)] = 4 * 3600  # from the bridge on
    warn_before_end_seconds: Annotated[float, Field(ge=0)] = 60
    media_timeout_seconds: Annotated[float, Field(gt=0)] = 30  # no RTP from a leg → hang up
    max_concurrent_calls: Annotated[int, Field(ge=1)] = 100  # 503 beyond
    max_ivr_seconds: Annotated[float, Field(gt=0)] = 300  # answer → bridge
    pin_guard: PinGuardConfig = PinGuardConfig()


class RouteEntry(_Section):
    """One routing rule; the first that matches an incoming INVITE wins.

    ``source``: "trunk" (any trunk), "trunk:NAME", "user" (an authenticated or registered
    SIP user), "user:NAME", or "any". ``uri_user``: a regular expression that must match the
    whole Request-URI user part. ``scenario``: dial_in, dial_out, jigasi_health, or a custom
    async function as "package.module:function".
    """

    source: str = "any"
    uri_user: str = ".*"
    scenario: str

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not re.fullmatch(r"any|trunk|user|trunk:[^\s:]+|user:[^\s:]+", value):
            raise ValueError(f"{value!r}: use any, trunk, trunk:NAME, user or user:NAME")
        return value

    @field_validator("uri_user")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"{value!r} is not a regular expression: {err}") from None
        return value

    @field_validator("scenario")
    @classmethod
    def _scenario(cls, value: str) -> str:
        if value in ("dial_in", "dial_out", "jigasi_health"):
            return value
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value):
            raise ValueError(
                f"{value!r}: use dial_in, dial_out, jigasi_health or package.module:function"
            )
        return value


def default_routes() -> list[RouteEntry]:
    # Jigasi's health check, then anything Jigasi dials is a dial-out, anything from a trunk a
    # dial-in.
    return [
        RouteEntry(source="user", uri_user="healthcheck", scenario="jigasi_health"),
        RouteEntry(source="user", uri_user=r"\+?[0-9]+", scenario="dial_out"),
        RouteEntry(source="trunk", uri_user=".*", scenario="dial_in"),
    ]


class Config(BaseSettings):
    """The whole configuration. Build it with :func:`load_config`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    http: HttpConfig = HttpConfig()
    store: StoreConfig = StoreConfig()
    mapper: MapperConfig = MapperConfig()
    numbers: NumbersConfig = NumbersConfig()
    dialout: DialoutConfig = DialoutConfig()
    sip: SipConfig = SipConfig()
    users: list[UserEntry] = []
    trunks: list[TrunkEntry] = []
    jigasi: JigasiConfig = JigasiConfig()
    ivr: IvrConfig = IvrConfig()
    limits: LimitsConfig = LimitsConfig()
    routes: list[RouteEntry] = Field(default_factory=default_routes)
    admin: AdminConfig = AdminConfig()
    log: LogConfig = LogConfig()

    @model_validator(mode="after")
    def _one_default_number(self) -> Config:
        if sum(1 for e in self.numbers.entries if e.default and not e.tenants) > 1:
            raise ValueError("numbers.entries: more than one entry has default = true")
        return self

    @model_validator(mode="after")
    def _names_resolve(self) -> Config:
        users = {u.name for u in self.users}
        if len(users) != len(self.users):
            raise ValueError("users: two entries have the same name")
        trunks = {t.name for t in self.trunks}
        if len(trunks) != len(self.trunks):
            raise ValueError("trunks: two entries have the same name")
        for i, route in enumerate(self.routes):
            kind, _, name = route.source.partition(":")
            if kind == "trunk" and name and name not in trunks:
                raise ValueError(f"routes.{i}.source: no trunk named {name!r}")
            if kind == "user" and name and name not in users:
                raise ValueError(f"routes.{i}.source: no user named {name!r}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_config passes the file's contents as init values: the environment wins over them.
        return (env_settings, init_settings)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read: ``--config``, else ``$DIALBRIDGE_CONFIG``, else none."""
    chosen = explicit or os.environ.get(CONFIG_ENV)
    return Path(chosen) if chosen else None


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Config:
    """Read, merge and validate; raise :class:`ConfigError` naming the bad key."""
    file = config_path(path)
    data: dict[str, Any] = {}
    if file is not None:
        if not file.is_file():
            raise ConfigError(f"config file {str(file)!r} does not exist")
        data = _read_toml(file)
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **values}
        else:
            data[section] = values
    try:
        return Config(**data)
    except ValidationError as err:
        raise ConfigError(_describe(err, file)) from None


def _read_toml(file: Path) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{file}: not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{file}: not UTF-8: {err}") from None


def _describe(err: ValidationError, file: Path | None) -> str:
    where = (
        f" (in {file} or the DIALBRIDGE_* environment)" if file else " (DIALBRIDGE_* environment)"
    )
    lines = []
    for problem in err.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        reason = problem["msg"]
        if problem["type"] == "extra_forbidden":
            reason = "unknown key"
        elif "input" in problem and not isinstance(problem["input"], dict | list):
            reason += f" (got {problem['input']!r})"
        lines.append(f"config key {key}: {reason}")
    return "invalid configuration" + where + ":\n  " + "\n  ".join(lines)
