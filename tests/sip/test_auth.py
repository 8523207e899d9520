"""Digest authentication (RFC 7616, RFC 8760): vectors, client/server round trips, nonce rules."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialbridge.sip.auth import (
    HA1,
    AuthParseError,
    Challenge,
    DigestChallenger,
    DigestClient,
    Verdict,
    digest_response,
    parse_challenge,
    parse_credentials,
)

# RFC 7616 §3.9.1
RFC_USER, RFC_PASSWORD, RFC_REALM = "Mufasa", "Circle of Life", "http-auth@example.org"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC_CHALLENGE_SHA256 = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC_CHALLENGE_MD5 = RFC_CHALLENGE_SHA256.replace("SHA-256", "MD5")

NOW = 1_800_000_000.0
USERS = {"alice": "wonderland", "jigasi": "s3cret"}


def lookup(username: str, realm: str) -> str | None:
    return USERS.get(username)


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_example_vectors(algorithm, expected):
    ha1 = HA1.from_password(RFC_USER, RFC_REALM, RFC_PASSWORD).for_algorithm(algorithm)
    response = digest_response(
        algorithm=algorithm,
        ha1=ha1,
        nonce=RFC_NONCE,
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce=RFC_CNONCE,
    )
    assert response == expected


@pytest.mark.parametrize(
    ("challenge", "expected"),
    [
        (RFC_CHALLENGE_MD5, "8ca523f5e9506fed4657c9700eebdbec"),
        (
            RFC_CHALLENGE_SHA256,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
    ],
)
def test_client_answers_the_rfc7616_challenge(challenge, expected):
    client = DigestClient(RFC_USER, RFC_PASSWORD)
    value = client.authorization(challenge, method="GET", uri="/dir/index.html", cnonce=RFC_CNONCE)
    creds = parse_credentials(value)
    assert creds.response == expected
    assert (creds.qop, creds.nc, creds.cnonce, creds.opaque) == (
        "auth",
        "00000001",
        RFC_CNONCE,
        RFC_OPAQUE,
    )


def test_challenge_parses_and_renders():
    challenge = parse_challenge(RFC_CHALLENGE_SHA256)
    assert challenge == Challenge(
        realm=RFC_REALM,
        nonce=RFC_NONCE,
        algorithm="SHA-256",
        qop=("auth", "auth-int"),
        opaque=RFC_OPAQUE,
    )
    assert parse_challenge(str(challenge)) == challenge


def test_round_trip_client_and_server_for_each_algorithm():
    for algorithm in ("SHA-256", "MD5", "SHA-512-256", "MD5-sess"):
        server = DigestChallenger("dialbridge", algorithms=(algorithm,))
        (challenge,) = server.challenges(NOW)
        client = DigestClient("alice", "wonderland")
        name, value = client.answer(401, [challenge], method="REGISTER", uri="sip:dialbridge")
        assert name == "Authorization"
        result = server.verify(value, method="REGISTER", now=NOW + 1, lookup=lookup)
        assert result.verdict is Verdict.OK, algorithm
        assert result.username == "alice"


def test_server_offers_sha256_first_and_client_takes_topmost_supported():
    server = DigestChallenger("dialbridge")
    challenges = server.challenges(NOW)
    assert [parse_challenge(c).algorithm for c in challenges] == ["SHA-256", "MD5"]
    assert parse_challenge(challenges[0]).nonce == parse_challenge(challenges[1]).nonce
    md5_only = DigestClient(
        "alice", ha1=HA1(md5=HA1.from_password("alice", "dialbridge", "wonderland").md5)
    )
    assert md5_only.choose(challenges).algorithm == "MD5"
    _, value = md5_only.answer(401, challenges, method="REGISTER", uri="sip:x")
    assert server.verify(value, method="REGISTER", now=NOW, lookup=lookup).ok


def test_stored_ha1_verifies_like_a_password():
    server = DigestChallenger("dialbridge")
    stored = {"alice": HA1.from_password("alice", "dialbridge", "wonderland")}
    client = DigestClient("alice", "wonderland")
    _, value = client.answer(401, server.challenges(NOW), method="INVITE", uri="sip:bob@x")
    result = server.verify(value, method="INVITE", now=NOW, lookup=lambda u, r: stored.get(u))
    assert result.ok


def test_replayed_nonce_count_is_rejected():
    server = DigestChallenger("dialbridge")
    client = DigestClient("alice", "wonderland")
    _, first = client.answer(401, server.challenges(NOW), method="REGISTER", uri="sip:x")
    assert server.verify(first, method="REGISTER", now=NOW, lookup=lookup).ok
    again = server.verify(first, method="REGISTER", now=NOW + 1, lookup=lookup)
    assert again.verdict is Verdict.REPLAY
    # The real client moves on with nc=2 on the same nonce, which is fine.
    second = client.reauthorize("dialbridge", method="REGISTER", uri="sip:x")
    assert parse_credentials(second).nc == "00000002"
    assert server.verify(second, method="REGISTER", now=NOW + 2, lookup=lookup).ok
    # ... and an older count after that is a replay too.
    assert server.verify(first, method="REGISTER", now=NOW + 3, lookup=lookup).verdict is (
        Verdict.REPLAY
    )


def test_expired_nonce_with_right_password_is_stale():
    server = DigestChallenger("dialbridge", nonce_lifetime=60)
    client = DigestClient("alice", "wonderland")
    _, value = client.answer(401, server.challenges(NOW), method="REGISTER", uri="sip:x")
    result = server.verify(value, method="REGISTER", now=NOW + 61, lookup=lookup)
    assert result.verdict is Verdict.STALE_NONCE and result.verdict.wants_stale
    renewed = server.challenges(NOW + 61, stale=True)
    assert all(parse_challenge(c).stale for c in renewed)
    assert "stale=TRUE" in renewed[0]


def test_expired_nonce_with_wrong_password_is_not_stale():
    server = DigestChallenger("dialbridge", nonce_lifetime=60)
    client = DigestClient("alice", "wrong")
    _, value = client.answer(401, server.challenges(NOW), method="REGISTER", uri="sip:x")
    result = server.verify(value, method="REGISTER", now=NOW + 61, lookup=lookup)
    assert result.verdict is Verdict.WRONG_PASSWORD


def test_wrong_password_is_rejected():
    server = DigestChallenger("dialbridge")
    _, value = DigestClient("alice", "guess").answer(
        401, server.challenges(NOW), method="REGISTER", uri="sip:x"
    )
    assert server.verify(value, method="REGISTER", now=NOW, lookup=lookup).verdict is (
        Verdict.WRONG_PASSWORD
    )


def test_unknown_user_is_rejected():
    server = DigestChallenger("dialbridge")
    _, value = DigestClient("mallory", "x").answer(
        401, server.challenges(NOW), method="REGISTER", uri="sip:x"
    )
    result = server.verify(value, method="REGISTER", now=NOW, lookup=lookup)
    assert result.verdict is Verdict.UNKNOWN_USER and result.username == "mallory"


def test_forged_or_foreign_nonce_is_invalid():
    server = DigestChallenger("dialbridge", secret=b"k" * 32)
    other = DigestChallenger("dialbridge", secret=b"j" * 32)
    client = DigestClient("alice", "wonderland")
    _, value = client.answer(401, other.challenges(NOW), method="REGISTER", uri="sip:x")
    assert server.verify(value, method="REGISTER", now=NOW, lookup=lookup).verdict is (
        Verdict.INVALID_NONCE
    )
    forged = Challenge(realm="dialbridge", nonce="bm90LW91cnM=", algorithm="SHA-256")
    value = client.authorization(forged, method="REGISTER", uri="sip:x")
    assert server.verify(value, method="REGISTER", now=NOW, lookup=lookup).verdict is (
        Verdict.INVALID_NONCE
    )


def test_nonces_need_no_storage_across_challenger_instances_with_one_secret():
    first = DigestChallenger("dialbridge", secret=b"s" * 32)
    second = DigestChallenger("dialbridge", secret=b"s" * 32)
    _, value = DigestClient("alice", "wonderland").answer(
        401, first.challenges(NOW), method="REGISTER", uri="sip:x"
    )
    assert second.verify(value, method="REGISTER", now=NOW + 10, lookup=lookup).ok


def test_wrong_realm_uri_mismatch_and_malformed():
    server = DigestChallenger("dialbridge")
    client = DigestClient("alice", "wonderland")
    other_realm = DigestChallenger("elsewhere").challenges(NOW)
    _, value = client.answer(401, other_realm, method="REGISTER", uri="sip:x")
    assert server.verify(value, method="REGISTER", now=NOW, lookup=lookup).verdict is (
        Verdict.WRONG_REALM
    )
    _, value = client.answer(401, server.challenges(NOW), method="REGISTER", uri="sip:x")
    result = server.verify(value, method="REGISTER", now=NOW, lookup=lookup, request_uri="sip:y")
    assert result.verdict is Verdict.URI_MISMATCH
    for garbage in ["", "Basic YWxpY2U6eA==", 'Digest username="a"', "Digest ,,,=", "Digest a"]:
        verdict = server.verify(garbage, method="REGISTER", now=NOW, lookup=lookup).verdict
        assert verdict is Verdict.MALFORMED, garbage


def test_method_is_part_of_the_response():
    server = DigestChallenger("dialbridge")
    _, value = DigestClient("alice", "wonderland").answer(
        401, server.challenges(NOW), method="REGISTER", uri="sip:x"
    )
    assert server.verify(value, method="INVITE", now=NOW, lookup=lookup).verdict is (
        Verdict.WRONG_PASSWORD
    )


def test_answer_without_qop_is_accepted_once_then_stale():
    server = DigestChallenger("dialbridge", algorithms=("MD5",))
    (value,) = server.challenges(NOW)
    legacy = Challenge(realm="dialbridge", nonce=parse_challenge(value).nonce, qop=())
    client = DigestClient("alice", "wonderland")
    answer = client.authorization(legacy, method="REGISTER", uri="sip:x")
    creds = parse_credentials(answer)
    assert creds.qop is None and creds.nc is None and creds.cnonce is None
    assert server.verify(answer, method="REGISTER", now=NOW, lookup=lookup).ok
    assert server.verify(answer, method="REGISTER", now=NOW, lookup=lookup).verdict is (
        Verdict.STALE_NONCE
    )
    strict = DigestChallenger("dialbridge", algorithms=("MD5",), require_qop=True)
    answer = client.authorization(
        Challenge(
            realm="dialbridge", nonce=parse_challenge(strict.challenges(NOW)[0]).nonce, qop=()
        ),
        method="REGISTER",
        uri="sip:x",
    )
    assert strict.verify(answer, method="REGISTER", now=NOW, lookup=lookup).verdict is (
        Verdict.MALFORMED
    )


def test_proxy_challenger_uses_407_headers_and_client_answers_with_proxy_authorization():
    server = DigestChallenger("dialbridge", proxy=True)
    assert (server.status, server.challenge_header, server.credentials_header) == (
        407,
        "Proxy-Authenticate",
        "Proxy-Authorization",
    )
    name, value = DigestClient("jigasi", "s3cret").answer(
        407, server.challenges(NOW), method="INVITE", uri="sip:room@meet"
    )
    assert name == "Proxy-Authorization"
    assert server.verify(value, method="INVITE", now=NOW, lookup=lookup).ok


def test_tracking_table_is_bounded_and_forgotten_nonces_turn_stale():
    server = DigestChallenger("dialbridge", max_tracked_nonces=4)
    answers = []
    for i in range(6):
        client = DigestClient("alice", "wonderland")
        _, value = client.answer(401, server.challenges(NOW + i), method="REGISTER", uri="sip:x")
        assert server.verify(value, method="REGISTER", now=NOW + i, lookup=lookup).ok
        answers.append(value)
    assert len(server._seen) <= 4
    # The first nonce was forgotten: replaying it cannot pass, it is sent back as stale.
    assert server.verify(answers[0], method="REGISTER", now=NOW + 7, lookup=lookup).verdict is (
        Verdict.STALE_NONCE
    )
    assert server.verify(answers[5], method="REGISTER", now=NOW + 7, lookup=lookup).verdict is (
        Verdict.REPLAY
    )


def test_client_refuses_when_no_challenge_is_usable():
    client = DigestClient("alice", ha1=HA1(md5="0" * 32))
    with pytest.raises(AuthParseError):
        client.choose(['Digest realm="r", nonce="n", algorithm=SHA-256', "Basic realm=x"])


def test_malformed_challenges_and_credentials_raise_auth_parse_error():
    for bad in ["Basic realm=x", 'Digest realm="r"', 'Digest realm="r", nonce="n", qop']:
        with pytest.raises(AuthParseError):
            parse_challenge(bad)
    with pytest.raises(AuthParseError):
        parse_credentials(
            'Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth'
        )


@settings(max_examples=300)
@given(
    st.one_of(
        st.text(max_size=200),
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "username",
                        "realm",
                        "nonce",
                        "uri",
                        "response",
                        "qop",
                        "nc",
                        "cnonce",
                        "algorithm",
                        "opaque",
                        "x",
                    ]
                ),  # fmt: skip
                st.text(max_size=20),
                st.booleans(),
            ),
            max_size=10,
        ).map(
            lambda ps: (
                "Digest " + ", ".join(f'{k}="{v}"' if quoted else f"{k}={v}" for k, v, quoted in ps)
            )
        ),
    )
)
def test_arbitrary_authorization_values_never_raise(value):
    server = DigestChallenger("dialbridge", secret=b"s" * 32)
    result = server.verify(value, method="REGISTER", now=NOW, lookup=lookup)
    assert result.verdict is not Verdict.OK
    with contextlib.suppress(AuthParseError):
        parse_challenge(value)


def test_client_counts_nc_per_nonce_when_proxy_and_uas_both_challenge():
    proxy = DigestChallenger("proxy", proxy=True)
    uas = DigestChallenger("dialbridge")
    client = DigestClient("alice", "wonderland")
    users = {"alice": "wonderland"}

    def lookup_any(username, realm):
        return users.get(username)

    _, p1 = client.answer(407, proxy.challenges(NOW), method="INVITE", uri="sip:x")
    _, u1 = client.answer(401, uas.challenges(NOW), method="INVITE", uri="sip:x")
    p2 = client.reauthorize("proxy", method="INVITE", uri="sip:x")
    u2 = client.reauthorize("dialbridge", method="INVITE", uri="sip:x")
    assert [parse_credentials(v).nc for v in (p1, u1, p2, u2)] == ["00000001"] * 2 + [
        "00000002"
    ] * 2
    for server, values in ((proxy, (p1, p2)), (uas, (u1, u2))):
        for value in values:
            assert server.verify(value, method="INVITE", now=NOW, lookup=lookup_any).ok
