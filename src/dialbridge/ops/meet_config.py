"""What Jitsi Meet needs to use dialbridge's web services, generated from our configuration.

* ``config.js`` keys (meet-services.md §2.1): ``dialInNumbersUrl`` (§2.2, GET
  ``/phoneNumberList``), ``dialInConfCodeUrl`` (the mapper, GET ``/conferenceMapper``),
  ``dialOutAuthUrl`` (§3.2 step 3, GET ``/authorizephone``), ``dialOutRegionUrl`` (§3.2 step 4,
  POST ``/outboundDestination``) and ``roomPasswordNumberOfDigits`` so that room passwords are
  digits a phone can type (JaaS uses 10).
* An nginx ``location`` block for the Meet server that proxies exactly those paths to our HTTP
  listener, so the services are same-origin (no CORS, §2.2) and nothing else of ours (admin,
  metrics, OpenAPI) is exposed on the Meet origin.
"""

from __future__ import annotations

from dataclasses import dataclass

from dialbridge.config import Config
from dialbridge.ops.jigasi_config import meet_domain_from

# Path → config.js key. The order is the order config.js documents them in.
SERVICE_PATHS = {
    "/phoneNumberList": "dialInNumbersUrl",
    "/conferenceMapper": "dialInConfCodeUrl",
    "/authorizephone": "dialOutAuthUrl",
    "/outboundDestination": "dialOutRegionUrl",
}
RECOMMENDED_PASSWORD_DIGITS = 10


@dataclass(frozen=True)
class MeetSettings:
    base_url: str  # https://meet.example.com (no trailing slash)
    upstream: str  # host:port of our HTTP listener as nginx reaches it
    password_digits: int
    dial_out: bool

    def urls(self) -> dict[str, str]:
        keys = dict(SERVICE_PATHS)
        if not self.dial_out:
            keys = {p: k for p, k in keys.items() if not k.startswith("dialOut")}
        return {key: self.base_url + path for path, key in keys.items()}


def meet_settings(
    config: Config,
    *,
    meet_domain: str | None = None,
    base_url: str | None = None,
    password_digits: int = RECOMMENDED_PASSWORD_DIGITS,
) -> MeetSettings:
    domain = meet_domain_from(config, meet_domain)
    host = config.http.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    dial_out = bool(
        config.dialout.allowed_countries or config.dialout.allow_prefixes
    )  # default deny: offering dial-out only makes sense once something is allowed
    return MeetSettings(
        base_url=(base_url or f"https://{domain}").rstrip("/"),
        upstream=f"{host}:{config.http.port}",
        password_digits=password_digits,
        dial_out=dial_out,
    )


def render_config_js(s: MeetSettings) -> str:
    lines = [
        "// dialbridge: add inside `var config = { ... }` in /etc/jitsi/meet/<domain>-config.js",
    ]
    lines += [f"{key}: '{url}'," for key, url in s.urls().items()]
    if not s.dial_out:
        lines.append(
            "// dial-out: no dialout.allowed_countries/allow_prefixes yet, so "
            "dialOutAuthUrl/dialOutRegionUrl are left out"
        )
    lines.append("// Room passwords of digits only, so phone callers can type them (JaaS uses 10):")
    lines.append(f"roomPasswordNumberOfDigits: {s.password_digits},")
    return "\n".join(lines) + "\n"


def render_nginx(s: MeetSettings) -> str:
    paths = "|".join(p.lstrip("/") for p in SERVICE_PATHS)
    return (
        "# dialbridge: add inside the `server { listen 443 ... }` block of\n"
        "# /etc/nginx/sites-available/<domain>.conf, before `location ~ ^/([^/?&:'\"]+)$`\n"
        "# (the room rule would otherwise answer these paths with the Meet page).\n"
        f"location ~ ^/({paths})$ {{\n"
        f"    proxy_pass http://{s.upstream};\n"
        "    proxy_http_version 1.1;\n"
        "    proxy_set_header Host $http_host;\n"
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "    proxy_set_header X-Forwarded-Proto $scheme;\n"
        "    proxy_read_timeout 10s;\n"
        "}\n"
    )
