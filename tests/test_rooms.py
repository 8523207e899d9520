import pytest

from dialbridge.rooms import (
    InvalidConference,
    canonical_room,
    domain_allowed,
    parse_conference,
    tenant_of,
)

MUC = "conference.meet.example.com"


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("MyRoom", "myroom"),
        ("myroom", "myroom"),
        ("MYROOM", "myroom"),
        ("Caf%C3%A9", "caf%c3%a9"),
        ("Café", "caf%c3%a9"),
        ("caf%c3%a9", "caf%c3%a9"),
        ("CAFÉ", "caf%c3%a9"),
        ("Cafe\u0301", "caf%c3%a9"),  # combining accent: NFKC composes it
        ("my room", "my%20room"),
        ("My%20Room", "my%20room"),
        ("ｍｙｒｏｏｍ", "myroom"),  # full-width letters: NFKC folds them
        ("Straße", "stra%c3%9fe"),
        ("t%C3%A4st", "t%c3%a4st"),
        ("Hey%20There", "hey%20there"),
        ("a'b(c)*!~._-", "a'b(c)*!~._-"),  # encodeURIComponent leaves these alone
        ("100%", "100%25"),  # a lone percent cannot be decoded: it is encoded
        ("日本", "%e6%97%a5%e6%9c%ac"),
        ("x/y?z", "x%2fy%3fz"),
    ],
)
def test_every_spelling_maps_to_the_backend_room_name(spelling: str, canonical: str) -> None:
    assert canonical_room(spelling) == canonical


def test_one_room_one_jid_for_all_spellings() -> None:
    jids = {
        parse_conference(f"{room}@{MUC}").jid for room in ("MyRoom", "myroom", "MYROOM", "My%52oom")
    }
    assert jids == {f"myroom@{MUC}"}
    cafe = {parse_conference(f"{room}@{MUC}").jid for room in ("Caf%C3%A9", "Café", "caf%c3%a9")}
    assert cafe == {f"caf%c3%a9@{MUC}"}


def test_domain_is_lower_cased_and_tenant_kept() -> None:
    conf = parse_conference("Room@Conference.ACME.Meet.Example.com")
    assert conf.jid == "room@conference.acme.meet.example.com"
    assert tenant_of(conf.domain, [MUC]) == "acme"
    assert tenant_of(MUC, [MUC]) is None
    assert tenant_of("conference.a.b.meet.example.com", [MUC]) is None


def test_split_is_at_the_last_at_sign() -> None:
    assert parse_conference(f"me@home@{MUC}").jid == f"me%40home@{MUC}"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "room",
        "@conference.x.org",
        "room@",
        "room@localhost",
        "room@bad domain.org",
        "%FF@conference.x.org",
        " @conference.x.org",
    ],
)
def test_invalid_conferences_are_refused(bad: str) -> None:
    with pytest.raises(InvalidConference):
        parse_conference(bad)


def test_allowed_domains_with_and_without_tenants() -> None:
    assert domain_allowed("conference.other.org", [], allow_tenants=True)
    assert domain_allowed(MUC, [MUC], allow_tenants=False)
    assert not domain_allowed("conference.other.org", [MUC], allow_tenants=True)
    assert domain_allowed("conference.acme.meet.example.com", [MUC], allow_tenants=True)
    assert not domain_allowed("conference.acme.meet.example.com", [MUC], allow_tenants=False)
