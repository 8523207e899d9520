"""Which digest algorithms the registrar offers: MD5 alone unless configured (Jigasi, SIPp and
baresip fail on a SHA-256 challenge; see docs/sip-interop.md)."""

from dialbridge.sip.ua import UserAgent, UserAgentConfig


def test_registrar_challenges_with_md5_only_by_default() -> None:
    ua = UserAgent(UserAgentConfig(users={"jigasi": "secret"}))
    challenges = ua.authenticator.challenger.challenges(0.0)
    assert len(challenges) == 1 and "algorithm=MD5" in challenges[0]


def test_sha256_can_be_offered_first_by_config() -> None:
    ua = UserAgent(
        UserAgentConfig(users={"jigasi": "secret"}, digest_algorithms=("SHA-256", "MD5"))
    )
    challenges = ua.authenticator.challenger.challenges(0.0)
    assert ["SHA-256" in challenges[0], "MD5" in challenges[1]] == [True, True]
