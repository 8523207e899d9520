"""The generated Meet lines: the config.js keys of meet-services.md §2.1 pointing at our paths,
and an nginx location that proxies exactly those paths."""

from __future__ import annotations

import re

from dialbridge.config import load_config
from dialbridge.ops.meet_config import meet_settings, render_config_js, render_nginx


def _js_keys(text: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+): '?([^',]+)'?,$", text, flags=re.M))


def test_config_js_has_the_four_service_urls_and_digit_passwords() -> None:
    config = load_config(
        None,
        mapper={"allowed_domains": ["conference.meet.example.com"]},
        dialout={"allowed_countries": ["DE"]},
    )
    keys = _js_keys(render_config_js(meet_settings(config)))
    # meet-services.md §2.1: the key names Meet reads, §2.2/§3.2: what each one is asked.
    assert keys == {
        "dialInNumbersUrl": "https://meet.example.com/phoneNumberList",
        "dialInConfCodeUrl": "https://meet.example.com/conferenceMapper",
        "dialOutAuthUrl": "https://meet.example.com/authorizephone",
        "dialOutRegionUrl": "https://meet.example.com/outboundDestination",
        "roomPasswordNumberOfDigits": "10",
    }


def test_dial_out_urls_are_left_out_while_dial_out_allows_nothing() -> None:
    keys = _js_keys(render_config_js(meet_settings(load_config(None), meet_domain="m.example.org")))
    assert keys["dialInConfCodeUrl"] == "https://m.example.org/conferenceMapper"
    assert "dialOutAuthUrl" not in keys and "dialOutRegionUrl" not in keys


def test_nginx_location_proxies_exactly_our_service_paths() -> None:
    config = load_config(None, http={"host": "127.0.0.1", "port": 8099})
    text = render_nginx(meet_settings(config))
    (pattern,) = re.findall(r"^location ~ (\S+) \{$", text, flags=re.M)
    assert "proxy_pass http://127.0.0.1:8099;" in text
    regex = re.compile(pattern)
    for path in ("/phoneNumberList", "/conferenceMapper", "/authorizephone",
                 "/outboundDestination"):  # fmt: skip
        assert regex.match(path), path
    # Not the admin page, metrics or a Meet room.
    for path in ("/admin", "/metrics", "/docs", "/myroom", "/conferenceMapperX"):
        assert not regex.match(path), path


def test_wildcard_http_host_is_reached_on_loopback(capsys) -> None:  # noqa: ANN001
    from dialbridge.cli import main

    assert main(["meet-config", "nginx"]) == 0
    assert "proxy_pass http://127.0.0.1:8088;" in capsys.readouterr().out
