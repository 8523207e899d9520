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

Sections present now: ``http``, ``store``, ``mapper``, ``numbers``, ``dialout``. Later issues
add ``sip``, ``trunks``, ``jigasi``, ``ivr``.
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

    @model_validator(mode="after")
    def _one_default_number(self) -> Config:
        if sum(1 for e in self.numbers.entries if e.default and not e.tenants) > 1:
            raise ValueError("numbers.entries: more than one entry has default = true")
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
