"""L4 authorization: Istio/ztunnel semantics of policies, rules, clauses and matches; fail closed."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ambit.authz import Connection, Decision, authorize, connection_for, matches, parse_cidr, parse_ip
from ambit.model.identity import Identity
from ambit.model.policy import (
    STRICT_POLICY_NAME,
    Action,
    Authorization,
    Clause,
    Match,
    MatchKind,
    Rule,
    Scope,
    StringMatch,
)

ALLOW, DENY = Action.ALLOW, Action.DENY
CURL = "cluster.local/ns/default/sa/curl"
PRESENCE = StringMatch(MatchKind.PRESENCE)


def conn(
    principal: str | None = CURL,
    namespace: str | None = "default",
    src: str = "10.244.1.5",
    dst: str = "10.244.2.7",
    port: int = 8080,
) -> Connection:
    return Connection(principal, namespace, src, dst, port)


PLAIN = conn(principal=None, namespace=None)


def s(text: str) -> StringMatch:
    return StringMatch.parse(text)


def policy(
    action: Action, *rules: Rule, name: str = "p", ns: str = "default", dry_run: bool = False
) -> Authorization:
    return Authorization(name, ns, Scope.NAMESPACE, action, rules, dry_run=dry_run)


def rule(*clauses: Clause) -> Rule:
    return Rule(clauses)


def clause(*ms: Match) -> Clause:
    return Clause(ms)


def one(match: Match, action: Action = ALLOW, name: str = "p", dry_run: bool = False) -> Authorization:
    """A policy with one rule, one clause, one match."""
    return policy(action, rule(clause(match)), name=name, dry_run=dry_run)


# --- connection_for -------------------------------------------------------------------------------


def test_connection_for_mtls_peer_drops_the_scheme() -> None:
    peer = Identity("cluster.local", "default", "curl")
    c = connection_for(peer, "10.0.0.1", "10.0.0.2", 80)
    assert c == Connection(CURL, "default", "10.0.0.1", "10.0.0.2", 80)
    assert not c.source_principal or not c.source_principal.startswith("spiffe://")


def test_connection_for_plaintext_has_no_identity() -> None:
    assert connection_for(None, "10.0.0.1", "10.0.0.2", 80) == Connection(
        None, None, "10.0.0.1", "10.0.0.2", 80
    )


# --- one field at a time --------------------------------------------------------------------------

FIELD_CASES = [
    # (id, match, connection, matches?)
    ("empty match matches everything", Match(), conn(), True),
    ("empty match matches plaintext", Match(), PLAIN, True),
    ("port hit", Match(destination_ports=(80, 8080)), conn(), True),
    ("port miss", Match(destination_ports=(80,)), conn(), False),
    ("not port hit", Match(not_destination_ports=(8080,)), conn(), False),
    ("not port miss", Match(not_destination_ports=(80,)), conn(), True),
    ("namespace exact", Match(namespaces=(s("default"),)), conn(), True),
    ("namespace exact miss", Match(namespaces=(s("prod"),)), conn(), False),
    ("namespace prefix", Match(namespaces=(s("def*"),)), conn(), True),
    ("namespace suffix", Match(namespaces=(s("*ult"),)), conn(), True),
    ("namespace presence", Match(namespaces=(PRESENCE,)), conn(), True),
    ("namespace absent never matches positive", Match(namespaces=(PRESENCE,)), PLAIN, False),
    ("not namespace hit", Match(not_namespaces=(s("default"),)), conn(), False),
    ("not namespace miss", Match(not_namespaces=(s("prod"),)), conn(), True),
    ("not namespace absent does not exclude", Match(not_namespaces=(PRESENCE,)), PLAIN, True),
    ("principal exact", Match(principals=(s(CURL),)), conn(), True),
    ("principal with spiffe scheme never matches", Match(principals=(s("spiffe://" + CURL),)), conn(), False),
    ("principal prefix", Match(principals=(s("cluster.local/ns/default/*"),)), conn(), True),
    ("principal suffix", Match(principals=(s("*/sa/curl"),)), conn(), True),
    ("principal suffix miss", Match(principals=(s("*/sa/sleep"),)), conn(), False),
    ("principal presence", Match(principals=(PRESENCE,)), conn(), True),
    ("principal absent", Match(principals=(PRESENCE,)), PLAIN, False),
    ("principal any of several", Match(principals=(s("x"), s(CURL))), conn(), True),
    ("not principal hit", Match(not_principals=(s(CURL),)), conn(), False),
    ("not principal miss", Match(not_principals=(s("x"),)), conn(), True),
    ("not principal presence vs mTLS", Match(not_principals=(PRESENCE,)), conn(), False),
    ("not principal presence vs plaintext", Match(not_principals=(PRESENCE,)), PLAIN, True),
    ("empty principal is not present", Match(principals=(PRESENCE,)), conn(principal=""), False),
    ("source ip /32", Match(source_ips=("10.244.1.5/32",)), conn(), True),
    ("source ip bare", Match(source_ips=("10.244.1.5",)), conn(), True),
    ("source ip cidr", Match(source_ips=("10.244.0.0/16",)), conn(), True),
    ("source ip host bits ignored", Match(source_ips=("10.244.9.9/16",)), conn(), True),
    ("source ip miss", Match(source_ips=("10.245.0.0/16",)), conn(), False),
    ("source ip v6 cidr vs v4 conn", Match(source_ips=("::/0",)), conn(), False),
    ("source ip mapped conn", Match(source_ips=("10.244.0.0/16",)), conn(src="::ffff:10.244.1.5"), True),
    ("source ip mapped cidr", Match(source_ips=("::ffff:10.244.0.0/112",)), conn(), True),
    ("source ip mapped bare", Match(source_ips=("::ffff:10.244.1.5",)), conn(), True),
    ("source ip v6", Match(source_ips=("fd00::/64",)), conn(src="fd00::5"), True),
    ("source ip v6 equivalent forms", Match(source_ips=("fd00:0:0::5",)), conn(src="fd00::5"), True),
    ("not source ip hit", Match(not_source_ips=("10.244.1.0/24",)), conn(), False),
    ("not source ip miss", Match(not_source_ips=("10.0.0.0/24",)), conn(), True),
    ("destination ip hit", Match(destination_ips=("10.244.2.7",)), conn(), True),
    ("destination ip miss", Match(destination_ips=("10.244.2.8",)), conn(), False),
    ("not destination ip hit", Match(not_destination_ips=("10.244.2.0/24",)), conn(), False),
    ("not destination ip miss", Match(not_destination_ips=("10.244.3.0/24",)), conn(), True),
    (
        "all fields AND: all hold",
        Match(
            namespaces=(s("default"),),
            principals=(s(CURL),),
            source_ips=("10.244.1.0/24",),
            destination_ips=("10.244.2.0/24",),
            destination_ports=(8080,),
        ),
        conn(),
        True,
    ),
    (
        "all fields AND: one fails",
        Match(namespaces=(s("default"),), principals=(s(CURL),), destination_ports=(9090,)),
        conn(),
        False,
    ),
    (
        "positive holds but its not_ also holds",
        Match(principals=(s("cluster.local/*"),), not_principals=(s(CURL),)),
        conn(),
        False,
    ),
]


@pytest.mark.parametrize(
    ("match", "connection", "expected"), [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES]
)
def test_match_fields(match: Match, connection: Connection, expected: bool) -> None:
    assert matches(one(match, ALLOW), connection) is expected
    assert matches(one(match, DENY), connection) is expected  # no unknowns: both actions agree


# --- nesting ---------------------------------------------------------------------------------------

HIT = Match(destination_ports=(8080,))
MISS = Match(destination_ports=(1,))


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        pytest.param((), False, id="no rules matches nothing"),
        pytest.param((rule(),), True, id="rule without clauses matches everything"),
        pytest.param((rule(clause()),), False, id="clause without matches matches nothing"),
        pytest.param((rule(clause(HIT)),), True, id="one hit"),
        pytest.param((rule(clause(MISS)),), False, id="one miss"),
        pytest.param((rule(clause(MISS, HIT)),), True, id="clause is OR"),
        pytest.param((rule(clause(HIT), clause(MISS)),), False, id="rule is AND of clauses"),
        pytest.param((rule(clause(HIT), clause(MISS, HIT)),), True, id="AND of ORs"),
        pytest.param((rule(clause(MISS)), rule(clause(HIT))), True, id="policy is OR of rules"),
        pytest.param((rule(clause(MISS)), rule(clause(HIT), clause(MISS))), False, id="no rule holds"),
    ],
)
def test_nesting(rules: tuple[Rule, ...], expected: bool) -> None:
    assert matches(policy(ALLOW, *rules), conn()) is expected
    assert matches(policy(DENY, *rules), conn()) is expected


# --- decisions --------------------------------------------------------------------------------------


def test_no_policy_allows() -> None:
    d = authorize(conn(), [])
    assert d == Decision(True, "allowed: no ALLOW policy applies", None)
    assert authorize(PLAIN, ()).allowed


def test_allow_with_no_rules_denies_everything() -> None:
    d = authorize(conn(), [policy(ALLOW, name="nothing")])
    assert d == Decision(False, "no ALLOW policy matched", None)


def test_matching_allow_names_itself() -> None:
    d = authorize(conn(), [one(MISS, name="a"), one(HIT, name="b")])
    assert d.allowed
    assert d.policy == "default/b"
    assert "default/b" in d.reason


def test_no_allow_matching_denies() -> None:
    d = authorize(conn(), [one(MISS, name="a"), one(MISS, name="b")])
    assert not d.allowed
    assert d.reason == "no ALLOW policy matched"
    assert d.policy is None


def test_deny_wins_over_allow() -> None:
    d = authorize(conn(), [one(HIT, ALLOW, name="a"), one(HIT, DENY, name="d")])
    assert not d.allowed
    assert d.policy == "default/d"
    assert "DENY" in d.reason
    assert "default/d" in d.reason


def test_non_matching_deny_alone_allows() -> None:
    d = authorize(conn(), [one(MISS, DENY, name="d")])
    assert d.allowed
    assert d.policy is None


def test_non_matching_deny_does_not_count_as_allow_policy() -> None:
    assert not authorize(conn(), [one(MISS, DENY, name="d"), one(MISS, ALLOW, name="a")]).allowed


def test_first_matching_deny_decides() -> None:
    d = authorize(conn(), [one(HIT, DENY, name="d1"), one(HIT, DENY, name="d2")])
    assert d.policy == "default/d1"


# --- dry run ----------------------------------------------------------------------------------------


def test_dry_run_deny_only_logs() -> None:
    d = authorize(conn(), [one(HIT, DENY, name="dry", dry_run=True)])
    assert d.allowed
    assert d.policy is None
    assert d.dry_run_matches == ("default/dry",)


def test_dry_run_allow_does_not_count_as_allow_policy() -> None:
    d = authorize(conn(), [one(MISS, ALLOW, name="dry", dry_run=True)])
    assert d.allowed
    assert d.dry_run_matches == ()


def test_dry_run_allow_does_not_allow() -> None:
    d = authorize(conn(), [one(HIT, ALLOW, name="dry", dry_run=True), one(MISS, ALLOW, name="real")])
    assert not d.allowed
    assert d.dry_run_matches == ("default/dry",)


def test_dry_run_matches_collected_even_when_denied() -> None:
    d = authorize(
        conn(),
        [
            one(HIT, DENY, name="d"),
            one(HIT, DENY, name="dry1", dry_run=True),
            one(MISS, DENY, name="dry2", dry_run=True),
            one(HIT, ALLOW, name="dry3", dry_run=True),
        ],
    )
    assert not d.allowed
    assert d.dry_run_matches == ("default/dry1", "default/dry3")


# --- STRICT (PeerAuthentication) --------------------------------------------------------------------

STRICT = Authorization(
    STRICT_POLICY_NAME,
    "istio-system",
    Scope.WORKLOAD_SELECTOR,
    DENY,
    (Rule((Clause((Match(not_principals=(PRESENCE,)),)),)),),
)


def test_strict_denies_plaintext() -> None:
    d = authorize(PLAIN, [STRICT])
    assert not d.allowed
    assert d.policy == f"istio-system/{STRICT_POLICY_NAME}"


def test_strict_allows_mtls() -> None:
    assert authorize(conn(), [STRICT]).allowed


def test_strict_translated_policy_behaves_the_same() -> None:
    from ambit.control.translate_peer_authn import static_strict_policy

    strict = static_strict_policy("istio-system")
    assert not authorize(PLAIN, [strict]).allowed
    assert authorize(conn(), [strict]).allowed


def test_strict_port_level() -> None:
    port_strict = one(Match(not_principals=(PRESENCE,), destination_ports=(8080,)), DENY)
    assert not authorize(PLAIN, [port_strict]).allowed
    assert authorize(dataclasses.replace(PLAIN, destination_port=9090), [port_strict]).allowed


def test_allow_from_namespace_refuses_plaintext() -> None:
    allow_ns = one(Match(namespaces=(s("default"),)))
    assert authorize(conn(), [allow_ns]).allowed
    assert not authorize(PLAIN, [allow_ns]).allowed


# --- fail closed on unparsable addresses ------------------------------------------------------------

BAD = "not-a-cidr"


@pytest.mark.parametrize(
    "match",
    [
        Match(source_ips=(BAD,)),
        Match(not_source_ips=(BAD,)),
        Match(destination_ips=(BAD,)),
        Match(not_destination_ips=(BAD,)),
        Match(source_ips=("10.244.1.0/33",)),
        Match(source_ips=("",)),
        Match(source_ips=("192.168.0.0/16", BAD)),  # a miss OR unknown is unknown
    ],
)
def test_bad_cidr_fails_closed(match: Match) -> None:
    assert not matches(one(match, ALLOW), conn())
    assert matches(one(match, DENY), conn())
    assert not authorize(conn(), [one(match, ALLOW)]).allowed
    d = authorize(conn(), [one(match, DENY, name="d")])
    assert not d.allowed
    assert d.policy == "default/d"
    assert "fail" in d.reason


def test_bad_cidr_next_to_a_hit_is_a_hit() -> None:
    match = Match(source_ips=(BAD, "10.244.0.0/16"))  # true OR unknown is true
    assert matches(one(match, ALLOW), conn())
    assert matches(one(match, DENY), conn())


def test_bad_cidr_in_a_deny_that_certainly_misses_does_not_deny() -> None:
    match = Match(source_ips=(BAD,), destination_ports=(1,))  # false AND unknown is false
    assert authorize(conn(), [one(match, DENY)]).allowed


def test_bad_cidr_in_one_allow_does_not_stop_another() -> None:
    d = authorize(conn(), [one(Match(source_ips=(BAD,)), name="bad"), one(HIT, name="good")])
    assert d.allowed
    assert d.policy == "default/good"


@pytest.mark.parametrize("field", ["src", "dst"])
def test_unparsable_connection_address_fails_closed(field: str) -> None:
    c = conn(src="garbage") if field == "src" else conn(dst="garbage")
    ips = Match(source_ips=("0.0.0.0/0",)) if field == "src" else Match(destination_ips=("0.0.0.0/0",))
    assert not authorize(c, [one(ips)]).allowed
    assert not authorize(c, [one(ips, DENY)]).allowed
    assert authorize(c, [one(HIT)]).allowed  # fields that do not need the address still work


def test_parse_helpers() -> None:
    assert parse_cidr("10.1.2.3") == ipaddress.ip_network("10.1.2.3/32")
    assert parse_cidr("fd00::1") == ipaddress.ip_network("fd00::1/128")
    assert parse_cidr("::ffff:10.0.0.0/104") == ipaddress.ip_network("10.0.0.0/8")
    assert parse_cidr("::ffff:0:0/95") == ipaddress.ip_network("::fffe:0:0/95")  # wider: stays IPv6
    assert parse_cidr("10.0.0.0/40") is None
    assert parse_ip("::ffff:10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert parse_ip("10.0.0.256") is None


# --- properties -------------------------------------------------------------------------------------

PRINCIPALS = [CURL, "cluster.local/ns/prod/sa/api", "cluster.local/ns/default/sa/sleep"]
NAMESPACES = ["default", "prod", "kube-system"]
IPS = ["10.244.1.5", "10.244.2.7", "10.96.0.10", "fd00::5", "::ffff:10.244.1.5"]
CIDRS = ["10.244.0.0/16", "10.244.1.5/32", "10.244.2.0/24", "10.96.0.0/12", "fd00::/64", "0.0.0.0/0", BAD]
PORTS = [80, 8080, 9090]

string_matches = st.one_of(
    st.just(PRESENCE),
    st.sampled_from(PRINCIPALS + NAMESPACES).map(s),
    st.sampled_from(["cluster.local/ns/default/*", "*/sa/curl", "def*", "*od"]).map(s),
)


FIELD_POOLS: dict[str, st.SearchStrategy[object]] = {
    "namespaces": string_matches,
    "principals": string_matches,
    "source_ips": st.sampled_from(CIDRS),
    "destination_ips": st.sampled_from(CIDRS),
    "destination_ports": st.sampled_from(PORTS),
}
ALL_FIELDS = sorted([*FIELD_POOLS, *(f"not_{f}" for f in FIELD_POOLS)])


@st.composite
def matches_st(draw: st.DrawFn) -> Match:
    """A sparse Match: up to three fields set, one or two entries each (cheap to generate)."""
    fields = draw(st.lists(st.sampled_from(ALL_FIELDS), max_size=3, unique=True))
    values = {
        f: tuple(draw(st.lists(FIELD_POOLS[f.removeprefix("not_")], min_size=1, max_size=2))) for f in fields
    }
    return Match(**values)  # type: ignore[arg-type]


rules_st = st.lists(
    st.builds(
        Rule,
        st.lists(st.builds(Clause, st.lists(matches_st(), max_size=2).map(tuple)), max_size=2).map(tuple),
    ),
    max_size=2,
).map(tuple)


@st.composite
def policies_st(draw: st.DrawFn, action: Action | None = None, dry_run: bool | None = None) -> Authorization:
    return Authorization(
        name=draw(st.sampled_from(["a", "b", "c", "d"])),
        namespace="default",
        scope=Scope.NAMESPACE,
        action=draw(st.sampled_from([ALLOW, DENY])) if action is None else action,
        rules=draw(rules_st),
        dry_run=draw(st.booleans()) if dry_run is None else dry_run,
    )


@st.composite
def connections_st(draw: st.DrawFn) -> Connection:
    principal = draw(st.one_of(st.none(), st.sampled_from(PRINCIPALS)))
    return Connection(
        principal,
        None if principal is None else principal.split("/")[2],
        draw(st.sampled_from(IPS)),
        draw(st.sampled_from(IPS)),
        draw(st.sampled_from(PORTS)),
    )


policy_lists = st.lists(policies_st(), max_size=4)
fast = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(
    st.builds(
        Connection,
        st.one_of(st.none(), st.text(max_size=20)),
        st.one_of(st.none(), st.text(max_size=10)),
        st.text(max_size=40),
        st.text(max_size=40),
        st.integers(),
    ),
    policy_lists,
)
def test_authorize_never_raises(c: Connection, policies: list[Authorization]) -> None:
    d = authorize(c, policies)
    assert isinstance(d.allowed, bool)


@fast
@given(connections_st(), policy_lists, policies_st(action=DENY, dry_run=False))
def test_adding_a_deny_never_allows_more(
    c: Connection, policies: list[Authorization], extra: Authorization
) -> None:
    if not authorize(c, policies).allowed:
        assert not authorize(c, [*policies, extra]).allowed


@fast
@given(
    connections_st(),
    policies_st(action=ALLOW, dry_run=False),
    policy_lists,
    policies_st(action=ALLOW, dry_run=False),
)
def test_adding_an_allow_to_allows_never_denies(
    c: Connection, base: Authorization, policies: list[Authorization], extra: Authorization
) -> None:
    policies = [base, *policies]  # a non-empty ALLOW set
    if authorize(c, policies).allowed:
        assert authorize(c, [*policies, extra]).allowed


def test_adding_the_first_allow_can_deny() -> None:
    """Why the property above needs a non-empty ALLOW set: the first ALLOW flips the default."""
    assert authorize(conn(), []).allowed
    assert not authorize(conn(), [one(MISS)]).allowed


@fast
@given(connections_st(), policy_lists, policies_st(action=ALLOW))
def test_an_allow_never_overrides_a_deny(
    c: Connection, policies: list[Authorization], extra: Authorization
) -> None:
    before = authorize(c, policies)
    if not before.allowed and before.policy is not None:  # denied by a DENY policy
        after = authorize(c, [*policies, extra])
        assert not after.allowed
        assert after.policy == before.policy


@fast
@given(connections_st(), policy_lists, st.lists(policies_st(dry_run=True), max_size=3))
def test_dry_run_policies_never_change_the_decision(
    c: Connection, policies: list[Authorization], dry: list[Authorization]
) -> None:
    before = authorize(c, policies)
    after = authorize(c, [*policies, *dry])
    assert (after.allowed, after.reason, after.policy) == (before.allowed, before.reason, before.policy)


@fast
@given(connections_st(), policy_lists, st.randoms(use_true_random=False))
def test_order_does_not_change_the_outcome(c: Connection, policies: list[Authorization], rnd: object) -> None:
    shuffled = list(policies)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert authorize(c, shuffled).allowed == authorize(c, policies).allowed


@fast
@given(connections_st(), policy_lists)
def test_decision_is_explained_by_its_policy(c: Connection, policies: list[Authorization]) -> None:
    d = authorize(c, policies)
    enforced = [p for p in policies if not p.dry_run]
    if d.policy is not None:
        # Generated lists may repeat a key (a real store cannot): some policy with it must explain d.
        expected = ALLOW if d.allowed else DENY
        assert any(p.action is expected for p in enforced if p.key == d.policy and matches(p, c))
    elif d.allowed:
        assert not any(p.action is ALLOW for p in enforced)
        assert not any(matches(p, c) for p in enforced if p.action is DENY)
    else:
        assert not any(matches(p, c) for p in enforced)
    assert set(d.dry_run_matches) == {p.key for p in policies if p.dry_run and matches(p, c)}


def _replace_bad(value: object, replacement: str) -> object:
    """``value`` with every BAD CIDR inside replaced by ``replacement``."""
    if isinstance(value, str):
        return replacement if value == BAD else value
    if isinstance(value, tuple):
        return tuple(_replace_bad(v, replacement) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _replace_bad(getattr(value, f.name), replacement) for f in dataclasses.fields(value)
        }
        changes = {k: v for k, v in changes.items() if k not in ("name", "namespace")}
        return dataclasses.replace(value, **changes)
    return value


@fast
@given(connections_st(), policy_lists, st.sampled_from([c for c in CIDRS if c != BAD]))
def test_bad_cidrs_never_allow_what_some_reading_would_deny(
    c: Connection, policies: list[Authorization], replacement: str
) -> None:
    if authorize(c, policies).allowed:
        fixed = [_replace_bad(p, replacement) for p in policies]
        assert authorize(c, fixed).allowed  # type: ignore[arg-type]


@fast
@given(
    connections_st(),
    st.sampled_from(["namespaces", "principals", "source_ips", "destination_ips", "destination_ports"]),
    st.data(),
)
def test_not_field_is_the_complement(c: Connection, field: str, data: st.DataObject) -> None:
    pool: st.SearchStrategy[object]
    if field in ("namespaces", "principals"):
        pool = string_matches
    elif field == "destination_ports":
        pool = st.sampled_from(PORTS)
    else:
        pool = st.sampled_from([x for x in CIDRS if x != BAD])
    values = tuple(data.draw(st.lists(pool, min_size=1, max_size=3)))
    positive = one(Match(**{field: values}))  # type: ignore[arg-type]
    negative = one(Match(**{f"not_{field}": values}))  # type: ignore[arg-type]
    assert matches(positive, c) != matches(negative, c)
