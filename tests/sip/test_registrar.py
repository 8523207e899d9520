"""RFC 3261 §10.3 registrar and the location service, with persisted bindings."""

from dialbridge.sip.flow import Flow
from dialbridge.sip.location import (
    Binding,
    JsonFileBindingStore,
    LocationService,
    MemoryBindingStore,
    aor_of,
)
from dialbridge.sip.message import Headers, Request
from dialbridge.sip.registrar import AuthOutcome, Registrar

US = ("127.0.0.1", 5060)
JIGASI_UDP = Flow("udp", US, ("127.0.0.1", 45000))


class TokenAuthenticator:
    """Stand-in for the digest authenticator: 'Authorization: ok <user>' passes."""

    def authenticate(self, request, now, *, proxy=False):
        value = request.headers.get("Authorization") or ""
        if value.startswith("ok "):
            return AuthOutcome(user=value[3:])
        return AuthOutcome(status=401, headers=(("WWW-Authenticate", 'Digest realm="x"'),))


def register(contacts=("<sip:jigasi@10.0.0.5:5060;transport=udp>",), *, expires=None,
             cseq=1, call_id="reg-1", user="jigasi", auth="ok jigasi"):  # fmt: skip
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKr" + str(cseq)),
            ("From", f"<sip:{user}@example.com>;tag=f"),
            ("To", f"<sip:{user}@example.com>"),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} REGISTER"),
        ]
    )
    for contact in contacts:
        headers.add("Contact", contact)
    if expires is not None:
        headers.add("Expires", str(expires))
    if auth:
        headers.add("Authorization", auth)
    return Request("REGISTER", "sip:example.com", headers)


def make_registrar(store=None, **kw):
    return Registrar(LocationService(store), TokenAuthenticator(), **kw)


def test_register_without_credentials_is_challenged():
    registrar = make_registrar()
    response = registrar.handle(register(auth=None), JIGASI_UDP, now=1000.0)
    assert response.status == 401
    assert response.headers.get("WWW-Authenticate") == 'Digest realm="x"'
    assert registrar.location.lookup("sip:jigasi@example.com", 1000.0) == []


def test_register_binds_contact_with_its_flow_and_lists_it():
    registrar = make_registrar()
    response = registrar.handle(register(expires=600), JIGASI_UDP, now=1000.0)
    assert response.status == 200
    assert response.headers.get_all("Contact") == [
        "<sip:jigasi@10.0.0.5:5060;transport=udp>;expires=600"
    ]
    (found,) = registrar.location.lookup("sip:jigasi@example.com", 1001.0)
    assert found.uri == "sip:jigasi@10.0.0.5:5060;transport=udp"
    assert found.flow is JIGASI_UDP  # the request goes back over the REGISTER's flow
    assert registrar.location.lookup("jigasi", 1001.0)[0].flow is JIGASI_UDP


def test_user_may_only_register_own_aor():
    registrar = make_registrar()
    response = registrar.handle(register(auth="ok mallory"), JIGASI_UDP, now=0.0)
    assert response.status == 403


def test_too_brief_expiry_gets_423_with_min_expires():
    registrar = make_registrar(min_expires=60)
    response = registrar.handle(register(expires=30), JIGASI_UDP, now=0.0)
    assert response.status == 423
    assert response.headers.get("Min-Expires") == "60"


def test_expiry_is_capped_and_contact_param_beats_header():
    registrar = make_registrar(max_expires=3600)
    contacts = ("<sip:a@10.0.0.5>;expires=120", "<sip:b@10.0.0.6>")
    response = registrar.handle(register(contacts, expires=99999), JIGASI_UDP, now=0.0)
    assert sorted(response.headers.get_all("Contact")) == [
        "<sip:a@10.0.0.5>;expires=120",
        "<sip:b@10.0.0.6>;expires=3600",
    ]


def test_several_contacts_and_unregister_one():
    registrar = make_registrar()
    registrar.handle(register(("<sip:a@10.0.0.5>", "<sip:b@10.0.0.6>")), JIGASI_UDP, now=0.0)
    registrar.handle(register(("<sip:a@10.0.0.5>;expires=0",), cseq=2), JIGASI_UDP, now=1.0)
    assert [r.uri for r in registrar.location.lookup("sip:jigasi@example.com", 2.0)] == [
        "sip:b@10.0.0.6"
    ]


def test_wildcard_unregister_removes_everything():
    registrar = make_registrar()
    registrar.handle(register(("<sip:a@10.0.0.5>", "<sip:b@10.0.0.6>")), JIGASI_UDP, now=0.0)
    response = registrar.handle(register(("*",), expires=0, cseq=2), JIGASI_UDP, now=1.0)
    assert response.status == 200
    assert response.headers.get_all("Contact") == []
    assert registrar.location.lookup("jigasi", 2.0) == []


def test_wildcard_without_expires_zero_is_400():
    registrar = make_registrar()
    assert registrar.handle(register(("*",), expires=60), JIGASI_UDP, now=0.0).status == 400


def test_same_call_id_with_old_cseq_is_refused():
    registrar = make_registrar()
    registrar.handle(register(cseq=5), JIGASI_UDP, now=0.0)
    assert registrar.handle(register(cseq=5), JIGASI_UDP, now=1.0).status == 500
    assert registrar.handle(register(cseq=6), JIGASI_UDP, now=1.0).status == 200


def test_register_without_contact_fetches_bindings():
    registrar = make_registrar()
    registrar.handle(register(expires=600), JIGASI_UDP, now=0.0)
    response = registrar.handle(register((), cseq=2), JIGASI_UDP, now=100.0)
    assert response.headers.get_all("Contact") == [
        "<sip:jigasi@10.0.0.5:5060;transport=udp>;expires=500"
    ]


def test_bindings_expire():
    registrar = make_registrar()
    registrar.handle(register(expires=60), JIGASI_UDP, now=0.0)
    assert registrar.location.lookup("jigasi", 59.0)
    assert registrar.location.lookup("jigasi", 60.5) == []
    assert registrar.location.expire(61.0) == 1


def test_bindings_survive_a_restart_and_udp_flow_is_rebuilt(tmp_path):
    store = JsonFileBindingStore(tmp_path / "bindings.json")
    make_registrar(store).handle(register(expires=600), JIGASI_UDP, now=0.0)
    restarted = LocationService(JsonFileBindingStore(tmp_path / "bindings.json"))
    (found,) = restarted.lookup("sip:jigasi@example.com", 10.0)
    assert found.flow == Flow("udp", US, ("127.0.0.1", 45000))
    assert found.binding.call_id == "reg-1"


def test_tcp_binding_after_restart_has_no_flow_but_live_one_has():
    tcp = Flow("tcp", US, ("127.0.0.1", 45001), connection=object())
    store = MemoryBindingStore()
    registrar = make_registrar(store)
    registrar.handle(register(("<sip:jigasi@10.0.0.5;transport=tcp>",)), tcp, now=0.0)
    assert registrar.location.lookup("jigasi", 1.0)[0].flow is tcp
    restarted = LocationService(store)
    assert restarted.lookup("jigasi", 1.0)[0].flow is None
    assert restarted.is_registered_flow(Flow("tcp", US, ("127.0.0.1", 45001), connection=object()))


def test_damaged_binding_file_loads_as_empty(tmp_path):
    path = tmp_path / "bindings.json"
    path.write_text("{not json")
    assert JsonFileBindingStore(path).load() == []


def test_aor_is_canonical():
    assert aor_of("sip:Jigasi@Example.COM:5060;transport=tcp") == "sip:Jigasi@example.com"
    assert isinstance(Binding("a", "b", 1.0, "c", 1, "k"), Binding)


def test_wrong_credentials_are_reported_for_banning():
    from dialbridge.sip.registrar import DigestAuthenticator

    failures = []
    registrar = Registrar(
        LocationService(), DigestAuthenticator("example.com", {"jigasi": "secret"}),
        on_auth_failure=failures.append,
    )  # fmt: skip
    challenge = registrar.handle(register(auth=None), JIGASI_UDP, now=1000.0)
    assert challenge.status == 401 and failures == []
    from dialbridge.sip.auth import DigestClient

    request = register(auth=None)
    name, value = DigestClient("jigasi", "wrong").answer(
        401, challenge.headers.get_all("WWW-Authenticate"), method="REGISTER", uri=request.uri
    )
    request.headers.add(name, value)
    assert registrar.handle(request, JIGASI_UDP, now=1001.0).status == 401
    assert failures == [JIGASI_UDP]
    good = register(auth=None, cseq=2)
    name, value = DigestClient("jigasi", "secret").answer(
        401, challenge.headers.get_all("WWW-Authenticate"), method="REGISTER", uri=good.uri
    )
    good.headers.add(name, value)
    assert registrar.handle(good, JIGASI_UDP, now=1002.0).status == 200
