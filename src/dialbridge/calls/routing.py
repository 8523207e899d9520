"""Routing: ordered rules from config pick the scenario of a new INVITE.

A rule matches the *source* of the INVITE (a trunk by name, a registered or authenticated SIP
user such as Jigasi, or anything) and the Request-URI user part by a regular expression that
must match the whole user part. The first matching rule wins; no match → 404.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dialbridge.calls.scenario import Scenario, load_scenario
from dialbridge.config import RouteEntry


@dataclass(frozen=True, slots=True)
class CallSource:
    trunk: str | None = None  # the trunk the INVITE came from
    user: str | None = None  # the SIP user that sent it (digest or registered flow)

    def __str__(self) -> str:
        if self.user:
            return f"user:{self.user}"
        if self.trunk:
            return f"trunk:{self.trunk}"
        return "unknown"


@dataclass(frozen=True)
class Route:
    source: str
    uri_user: re.Pattern[str]
    scenario_name: str
    scenario: Scenario

    def matches(self, source: CallSource, user: str) -> bool:
        kind, _, name = self.source.partition(":")
        if kind == "trunk" and (source.trunk is None or (name and source.trunk != name)):
            return False
        if kind == "user" and (source.user is None or (name and source.user != name)):
            return False
        return self.uri_user.fullmatch(user) is not None


class CallRouter:
    def __init__(self, rules: list[RouteEntry]) -> None:
        self.routes = [
            Route(r.source, re.compile(r.uri_user), r.scenario, load_scenario(r.scenario))
            for r in rules
        ]

    def match(self, source: CallSource, user: str) -> Route | None:
        return next((r for r in self.routes if r.matches(source, user)), None)
