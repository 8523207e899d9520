"""The dial-in number list Meet shows (``GET /phoneNumberList``, meet-services.md §2.4).

Two answer formats: the current array ``[{countryCode, formattedNumber, tollFree, default?}]``
and the legacy object ``{message, numbers: {CC: [...]}, numbersEnabled}``. With no numbers the
array is empty and the object says ``numbersEnabled: false``: Meet then hides dial-in instead of
showing a broken invitation.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType

from dialbridge.config import NumberEntry, NumbersConfig

SPECIAL_COUNTRY_CODES = {"SIP", "SIP_AUDIO_ONLY"}


class InvalidNumber(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class DialInNumber:
    e164: str
    country: str
    formatted: str
    toll_free: bool
    default: bool
    tenants: tuple[str, ...]


def describe(entry: NumberEntry) -> DialInNumber:
    """Validate and format one configured number."""
    country = (entry.country or "").upper()
    if country in SPECIAL_COUNTRY_CODES:
        label = entry.label or entry.number
        return DialInNumber(
            entry.number, country, label, bool(entry.toll_free), entry.default, tuple(entry.tenants)
        )
    try:
        number = phonenumbers.parse(entry.number, country or None)
    except phonenumbers.NumberParseException as err:
        raise InvalidNumber(f"{entry.number!r}: {err}") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidNumber(f"{entry.number!r} is not a possible phone number")
    region = phonenumbers.region_code_for_number(number) or country
    toll_free = entry.toll_free
    if toll_free is None:
        toll_free = phonenumbers.number_type(number) == PhoneNumberType.TOLL_FREE
    return DialInNumber(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        country=country or region,
        formatted=entry.label
        or phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
        toll_free=toll_free,
        default=entry.default,
        tenants=tuple(entry.tenants),
    )


class PhoneNumberList:
    def __init__(self, config: NumbersConfig) -> None:
        self.config = config
        self.numbers = [describe(e) for e in config.entries]

    def for_tenant(self, tenant: str | None) -> list[DialInNumber]:
        """A tenant with numbers of its own sees those; everyone else sees the shared ones."""
        if tenant:
            own = [n for n in self.numbers if tenant.lower() in n.tenants]
            if own:
                return own
        return [n for n in self.numbers if not n.tenants]

    def as_array(self, tenant: str | None) -> list[dict[str, object]]:
        numbers = self.for_tenant(tenant)
        # Meet takes the first entry with default=true, else the first entry: put it first too.
        numbers = sorted(numbers, key=lambda n: not n.default)
        out: list[dict[str, object]] = []
        for n in numbers:
            item: dict[str, object] = {
                "countryCode": n.country,
                "formattedNumber": n.formatted,
                "tollFree": n.toll_free,
            }
            if n.default:
                item["default"] = True
            out.append(item)
        return out

    def as_legacy(self, tenant: str | None) -> dict[str, object]:
        grouped: dict[str, list[str]] = {}
        for n in sorted(self.for_tenant(tenant), key=lambda n: not n.default):
            grouped.setdefault(n.country, []).append(n.formatted)
        return {"message": self.config.message, "numbers": grouped, "numbersEnabled": bool(grouped)}
