"""Every template render is bounded (issue 21, item 1): each known way to make a large value
or to run for long hits a bound, with ``TemplateLimitExceeded`` naming the bound and never a
value, and without allocating the large value first (checked with tracemalloc's peak)."""

from __future__ import annotations

import tracemalloc

import pytest

from secretsync.errors import InvalidTemplate
from secretsync.reconcile import template_limits as limits
from secretsync.reconcile.template import render_data
from secretsync.reconcile.template_limits import Limits, TemplateLimitExceeded

MARKER = "s3cr3t-MARKER-value"
VALUES = {"v": MARKER.encode(), "big": b"y" * 600_000}

BOMBS = {
    "repeat": ("{{ 'x' * 300000000 }}", "repeated value"),
    "repeat a value": ("{{ v * 100000000 }}", "repeated value"),
    "list repeat": ("{{ [v] * 100000000 }}", "repeated value"),
    "center": ("{{ 'x'|center(300000000) }}", "padded value"),
    "ljust method": ("{{ v.ljust(300000000) }}", "padded value"),
    "zfill": ("{{ '1'.zfill(300000000) }}", "padded value"),
    "str.format width": ("{{ '{:>300000000}'.format(v) }}", "formatted value"),
    "nested format width": ("{{ '{:>{w}}'.format(v, w=300000000) }}", "formatted value"),
    "printf width": ("{{ '%300000000s' % v }}", "formatted value"),
    "printf star": ("{{ '%*s' % (300000000, v) }}", "'*' width"),
    "format filter": ("{{ '%300000000s'|format(v) }}", "formatted value"),
    "indent": ("{{ v|indent(300000000, true) }}", "indented value"),
    "replace empty": ("{{ big|replace('', big) }}", "replaced value"),
    "replace method": ("{{ big.replace('y', big) }}", "replaced value"),
    "expandtabs": ("{{ ('\t' * 1000).expandtabs(100000000) }}", "tabs expanded"),
    "join": ("{{ range(100000)|join(big) }}", "joined value"),
    "join method": ("{{ big.join(range(2000)|map('string')) }}", "joined value"),
    "power": ("{{ 2 ** 1000000000 }}", "bits"),
    "tilde doubling": ("{% set ns = namespace(s=v) %}{% for i in range(64) %}"
                       "{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "concatenation"),
    "plus doubling": ("{% set ns = namespace(s=v) %}{% for i in range(64) %}"
                      "{% set ns.s = ns.s + ns.s %}{% endfor %}", "concatenation"),
    "captured block": ("{% set x %}{% for i in range(5000) %}{{ big }}{% endfor %}"
                       "{% endset %}", "joined value"),
    "macro body": ("{% macro m() %}{% for i in range(5000) %}{{ big }}{% endfor %}"
                   "{% endmacro %}{{ m()|length }}", "joined value"),
    "recursion doubling": ("{% macro f(s, n) %}{{ f(s ~ s, n - 1) if n else s|length }}"
                           "{% endmacro %}{{ f(v, 200) }}", ""),
    "deep recursion": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nested"),
    "output": ("{% for i in range(5000) %}{{ big }}{% endfor %}", "rendered Secret"),
    # the iteration budget or the deadline, whichever comes first on a busy machine
    "nested loops": ("{% for i in range(100000) %}{% for j in range(100000) %}"
                     "{% endfor %}{% endfor %}", ""),
    "slice": ("{{ v|slice(1000000000)|list|length }}", "slice"),
    "yaml alias": ("{{ ('a: &a [' ~ 'x,' * 10 ~ ']\\nb: &b [*a,*a,*a,*a]\\nc: [*b,*b]')"
                   "|fromYaml|toJson }}", ""),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bomb_hits_a_bound_without_allocating(name: str) -> None:
    template, words = BOMBS[name]
    tracemalloc.start()
    try:
        with pytest.raises(InvalidTemplate) as info:
            render_data({"k": template}, VALUES)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = info.value.message
    assert message.startswith("template for key 'k': ")
    assert words in message
    assert MARKER not in message and "yyyy" not in message
    # the inputs are 0.6 MB; a bound may let a value of max_bytes (1 MiB) exist, never more
    # than a few of them
    assert peak < 8 * (1 << 20), (name, peak)


def test_bounds_other_than_yaml_are_limit_errors() -> None:
    with pytest.raises(TemplateLimitExceeded):
        render_data({"k": BOMBS["repeat"][0]}, VALUES)


def test_loops_share_one_iteration_budget() -> None:
    loops = "{% for i in range(600) %}{% for j in range(600) %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateLimitExceeded, match="more than 100000 iterations"):
        render_data({"k": loops}, {}, Limits(max_iterations=100_000, timeout=600))
    assert render_data({"k": loops}, {}, Limits(max_iterations=400_000, timeout=600)) == {
        "k": b""}


def test_a_render_stops_at_its_deadline() -> None:
    slow = "{% for i in range(100000) %}{% for j in range(9) %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateLimitExceeded, match="render deadline"):
        render_data({"k": slow}, {}, Limits(timeout=0.001, max_iterations=10**9))


def test_the_output_bound_counts_all_keys_of_the_secret() -> None:
    half = "{{ 'x' * 600 }}"
    assert len(render_data({"a": half}, {}, Limits(max_bytes=1024))["a"]) == 600
    with pytest.raises(TemplateLimitExceeded, match="rendered Secret"):
        render_data({"a": half, "b": half}, {}, Limits(max_bytes=1024))


def test_ordinary_templates_render_as_before() -> None:
    out = render_data(
        {
            "dsn": "postgres://{{ user }}:{{ v }}@db/app",
            "list": "{% for x in ['a', 'b'] %}{{ loop.index }}{{ x }}{% endfor %}",
            "fmt": "{{ '%05d' % 42 }} {{ '{:>5}|{}'.format('a', 1700000000) }} {{ 'ab' * 3 }}",
            "filters": "{{ v|b64enc|b64dec == v }} {{ 'a b'|replace(' ', '_') }} "
                       "{{ ['x', 'y']|join(',') }} {{ 'k'|center(5) }}|{{ 2 ** 10 }}",
            "macro": "{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(user) }}",
            "block": "{% set b %}{{ user }}-{{ user }}{% endset %}{{ b ~ '!' }}",
        },
        {"user": b"admin", "v": MARKER.encode()},
    )
    assert out == {
        "dsn": f"postgres://admin:{MARKER}@db/app".encode(),
        "list": b"1a2b",
        "fmt": b"00042     a|1700000000 ababab",
        "filters": b"True a_b x,y   k  |1024",
        "macro": b"<admin>",
        "block": b"admin-admin!",
    }


def test_the_controller_sets_the_process_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from secretsync.controller import settings

    monkeypatch.setenv("SECRETSYNC_TEMPLATE_MAX_BYTES", "2048")
    monkeypatch.setenv("SECRETSYNC_TEMPLATE_TIMEOUT", "0.5")
    before = limits.default_limits()
    try:
        limits.set_default_limits(settings.template_limits())  # as main.run does
        assert limits.default_limits() == Limits(max_bytes=2048, timeout=0.5)
        with pytest.raises(TemplateLimitExceeded, match=r"2\.0 KiB"):
            render_data({"k": "{{ 'x' * 4096 }}"}, {})
    finally:
        limits.set_default_limits(before)
