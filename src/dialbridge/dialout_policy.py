"""Which phone numbers a Meet moderator may call.

One object answers for both gates: ``GET /authorizephone`` (Meet's preview while the moderator
types, meet-services.md §3.2) and the SIP dial-out path (the real gate, where Jigasi's INVITE
arrives). The policy is default-deny: a destination must be in an allowed country or match an
allow prefix, must not match a deny prefix, and premium-rate, shared-cost and invalid numbers are
refused unless the admin says otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType

from dialbridge.config import DialoutConfig


@dataclass(frozen=True, slots=True)
class DialOutDecision:
    allow: bool
    country: str  # ISO 3166 alpha-2, "" when unknown
    phone: str  # E.164 that will be dialled ("+4930..."), or the input when unparseable
    reason: str  # why, for logs, CDRs and the SIP Reason header

    def as_meet_json(self) -> dict[str, object]:
        return {"allow": self.allow, "country": self.country, "phone": self.phone}


_DIGITS_ONLY = re.compile(r"[^\d+]")


class DialOutPolicy:
    def __init__(self, config: DialoutConfig) -> None:
        self.config = config

    def parse(self, raw: str, region: str | None = None) -> phonenumbers.PhoneNumber | None:
        """Meet strips every non-digit, '+' included (§3.2), so digits alone are read as
        international first; a number with a national prefix falls back to the default region."""
        text = _DIGITS_ONLY.sub("", raw.strip())
        if not text.strip("+"):
            return None
        candidates = [text] if text.startswith("+") else ["+" + text, text]
        parsed = []
        for candidate in candidates:
            try:
                parsed.append(
                    phonenumbers.parse(candidate, (region or self.config.default_region).upper())
                )
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(parsed[-1]):
                return parsed[-1]
        # Nothing valid: report the international reading, so the answer names the country.
        return parsed[0] if parsed else None

    def check(self, raw: str, region: str | None = None) -> DialOutDecision:
        if region and region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            region = None  # Meet's deploymentInfo.region is a data-centre name, not a country
        number = self.parse(raw, region)
        if number is None:
            return DialOutDecision(False, "", raw, "not a phone number")
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        country = phonenumbers.region_code_for_number(number) or ""
        if country == "001":  # non-geographic entities (satellite, UIFN, ...)
            country = ""

        def deny(reason: str) -> DialOutDecision:
            return DialOutDecision(False, country, e164, reason)

        if self.config.refuse_invalid and not phonenumbers.is_valid_number(number):
            return deny("invalid number")
        number_type = phonenumbers.number_type(number)
        if number_type == PhoneNumberType.PREMIUM_RATE and self.config.refuse_premium_rate:
            return deny("premium-rate number")
        if number_type == PhoneNumberType.SHARED_COST and self.config.refuse_shared_cost:
            return deny("shared-cost number")
        if any(e164.startswith(p) for p in self.config.deny_prefixes):
            return deny("destination prefix denied")
        if any(e164.startswith(p) for p in self.config.allow_prefixes):
            return DialOutDecision(True, country, e164, "prefix allowed")
        if country and country in self.config.allowed_countries:
            return DialOutDecision(True, country, e164, "country allowed")
        return deny("destination not allowed")
