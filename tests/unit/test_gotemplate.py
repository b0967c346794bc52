"""The Go-template engine (ESO's engineVersion v2) on its own: grammar, Go's printing and
comparison rules, sprig and ESO functions, bytes end to end, errors that name no value, and
bounds. Expected outputs are what ESO's engine gives (tests/integration/test_gotemplate_vs_go
checks the engine against it directly)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secretsync.errors import InvalidTemplate
from secretsync.reconcile.gotemplate import compile_template, render
from secretsync.reconcile.template_limits import Limits, TemplateLimitExceeded

DATA = {"a": b"hi", "b": b"x,y", "n": b"42", "e": b"", "bin": b"\xff\x00z",
        "j": b'{"k":[1,2.5,"s",null,true],"m":{"z":1}}'}

CASES = [
    ("{{ .a | upper }}", b"HI"),
    ('{{- range $i, $v := splitList "," .b }} [{{$i}}={{$v}}]{{ end }}', b" [0=x] [1=y]"),
    ('{{ dict "x" 1 "y" (list 1 2.5 nil) }}', b"map[x:1 y:[1 2.5 <nil>]]"),
    ('{{ index . "zz" }}|{{ index (dict) "q" }}|', b"|<no value>|"),
    ("{{ 1e6 }} {{ 1.5e-7 }} {{ 123456789.0 }} {{ 100000.0 }}",
     b"1e+06 1.5e-07 1.23456789e+08 100000"),
    ('{{ printf "%05d|%-4s|%q|%v" 42 "ab" "h\\"i" (list) }}', b'00042|ab  |"h\\"i"|[]'),
    ("{{ (fromJson .j).k }}", b"[1 2.5 s <nil> true]"),
    ("{{ toJson (fromJson .j) }}", b'{"k":[1,2.5,"s",null,true],"m":{"z":1}}'),
    ("{{ toYaml (fromJson .j) }}", b"k:\n- 1\n- 2.5\n- s\n- null\n- true\nm:\n  z: 1"),
    ("{{ .bin | b64enc }}", b"/wB6"),
    ('{{ "!!" | b64dec }}', b"illegal base64 data at input byte 0"),
    ('{{ "aGk=" | b64dec }}|{{ "aGk" | b64dec }}', b"hi|illegal base64 data at input byte 0"),
    ('{{ quote .bin "x\\n" 1 nil }}', b'"\\xff\\x00z" "x\\n" "1"'),
    ('{{ repeat 3 "ab" }}', b"ababab"),
    ('{{ split "," .b }}', b"map[_0:x _1:y]"),
    ('{{ eq 1 2 1 }} {{ eq "a" "a" }}', b"true true"),
    ('{{ and 1 0 2 }} {{ or 0 "" "x" }}', b"0 x"),
    ("{{ not 0 }} {{ len \"abc\" }} {{ len . }}", b"true 3 6"),
    ("{{ if .e }}y{{ else if .a }}a{{ else }}n{{ end }}", b"a"),
    ("{{ with .e }}y{{ else with .a }}{{ . }}{{ end }}", b"hi"),
    ("{{ range 3 }}{{ . }}{{ end }}", b"012"),
    ("{{ range $k, $v := . }}{{ $k }};{{ end }}", b"a;b;bin;e;j;n;"),
    ("{{ range $x := list 1 2 3 4 }}{{ if eq $x 2 }}{{ continue }}{{ end }}"
     "{{ if eq $x 4 }}{{ break }}{{ end }}{{ $x }}{{ end }}", b"13"),
    ('{{ define "t" }}[{{ . }}]{{ end }}{{ template "t" .a }}{{ template "t" }}',
     b"[hi][<no value>]"),
    ('{{ block "bb" .a }}<{{ . }}>{{ end }}', b"<hi>"),
    ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", b"2"),
    ("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ end }}{{ $x }}", b"1"),
    ('{{ print 1 2 "a" "b" 3 nil }}', b"1 2ab3 <nil>"),
    ('{{ default "d" .e }} {{ default "d" .a }} {{ empty .e }} {{ coalesce .e "" "c" }}',
     b"d hi true c"),
    ('{{ atoi "12" }} {{ atoi "x" }} {{ int "010" }} {{ int "0x1f" }} {{ int 3.9 }}',
     b"12 0 8 31 3"),
    ("{{ div 7 -2 }} {{ mod -7 2 }} {{ add 9223372036854775807 1 }}",
     b"-3 -1 -9223372036854775808"),
    ('{{ indent 2 "a\\nb" }}|{{ nindent 2 "a" }}', b"  a\n  b|\n  a"),
    ('{{ trim "  a \\t" }}|{{ trimPrefix "a" "abc" }}|{{ trimSuffix "c" "abc" }}', b"a|bc|ab"),
    ('{{ replace "" "-" "abc" }}', b"-a-b-c-"),
    ("{{ 'a' }} {{ 0x10 }} {{ 1_000 }} {{ 010 }} {{ -3 }}", b"97 16 1000 8 -3"),
    ("{{ `raw\\n` }}", b"raw\\n"),
    ("{{/* comment */}}x  {{- /* c2 */ -}}  y", b"xy"),
    ('a {{- "x" -}} b', b"axb"),
    ('{{ "a" | printf "%s-%s" "b" }}', b"b-a"),
    ('{{ printf "%d" "x" }} {{ printf "%x" "hi" }} {{ printf "%.2f" 3.14159 }}',
     b"%!d(string=x) 6869 3.14"),
    ('{{ toJson "<a&b>" }} {{ toJson .bin }}', b'"\\u003ca\\u0026b\\u003e" "\\ufffd\\u0000z"'),
    ('{{ toYaml (list "true" "%x" "y" "a b") }}', b'- "true"\n- \'%x\'\n- "y"\n- a b'),
    ('{{ fromYaml "a: 1\\nb: [x, y]" }}', b"map[a:1 b:[x true]]"),
    ('{{ sortAlpha (keys (dict "b" 1 "a" 2)) }}', b"[a b]"),
    ('{{ html "<a>" }} {{ urlquery "a b&c" }}', b"&lt;a&gt; a+b%26c"),
    ("{{ .bin }}", b"\xff\x00z"),
    ('{{ lower "\\u00c0B" }}', "àb".encode()),
]


@pytest.mark.parametrize(("tpl", "want"), CASES, ids=[c[0][:40] for c in CASES])
def test_render(tpl: str, want: bytes) -> None:
    assert render(tpl, DATA) == want


ERRORS = [
    ("{{ .missing }}", 'map has no entry for key "missing"'),
    ("{{ .a.b }}", "can't evaluate field b in type string"),
    ("{{ nope }}", "function 'nope' not defined"),
    ("{{ $x }}", "undefined variable"),
    ("{{ break }}", "outside {{range}}"),
    ("{{ if 1 }}", "unexpected EOF"),
    ("{{ end }}", "unexpected {{end}}"),
    ("{{ nil }}", "nil is not a command"),
    ('{{ "a" | "b" }}', "non executable command"),
    ("{{ upper 1 }}", "expected string"),
    ("{{ repeat (add 1 2) \"x\" }}", "expected int; got int64"),
    ("{{ 1 2 }}", "can't give argument to non-function"),
    ("{{ div 1 0 }}", "error calling div"),
    ('{{ template "nope" }}', "no such template"),
    ("{{ eq 1 \"1\" }}", "incompatible types for comparison"),
    ("{{ lt true false }}", "invalid type for comparison"),
    ("{{ 1e400 }}", "bad number syntax"),
    ("{{ .a", "unclosed action"),
    ("{{ /* x */ }}", "unrecognized character"),
]


@pytest.mark.parametrize(("tpl", "needle"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_are_invalid_template_naming_the_problem(tpl: str, needle: str) -> None:
    with pytest.raises(InvalidTemplate) as info:
        render(tpl, DATA)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_errors_never_carry_values() -> None:
    secret = {"pw": b"hunter2-secret"}
    for tpl in ("{{ .pw | upper | .x }}", "{{ .pw.x }}", "{{ eq .pw 1 }}", "{{ .pw | repeat }}",
                "{{ .pw | pkcs12key }}", "{{ .pw | jwkPublicKeyPem }}", "{{ index .pw 99 }}",
                '{{ .pw | filterPEM "CERTIFICATE" }}', "{{ .pw | fail }}"):
        with pytest.raises(InvalidTemplate) as info:
            render(tpl, secret)
        assert "hunter2" not in str(info.value), tpl


def test_compiled_template_renders_many_times() -> None:
    tree = compile_template("{{ .a }}-{{ .n }}")
    assert render(tree, {"a": b"1", "n": b"2"}) == b"1-2"
    assert render(tree, {"a": b"3", "n": b"4"}) == b"3-4"


BOMBS = [
    '{{ repeat 100000000 "x" }}',
    '{{ indent 100000000 "x" }}',
    '{{ printf "%100000000s" "x" }}',
    "{{ range until 100000 }}{{ range until 100000 }}{{ end }}{{ end }}",
    '{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}',
    "{{ range until 2000 }}{{ $.a }}{{ end }}",
    "{{ $s := .a }}{{ range until 64 }}{{ $s = print $s $s }}{{ end }}",
]


@pytest.mark.parametrize("tpl", BOMBS)
def test_bombs_hit_a_bound(tpl: str) -> None:
    small = Limits(max_bytes=1000, timeout=5.0, max_iterations=10_000, max_depth=16)
    with pytest.raises(TemplateLimitExceeded):
        render(tpl, {"a": b"hello"}, small)


def test_deadline() -> None:
    slow = "{{ range until 1000 }}{{ range until 1000 }}{{ sha256sum $.a }}{{ end }}{{ end }}"
    with pytest.raises(TemplateLimitExceeded, match="deadline"):
        render(slow, {"a": b"x"}, Limits(timeout=0.05, max_bytes=1 << 30))


def test_render_data_bounds_all_keys_together() -> None:
    from secretsync.reconcile.gotemplate import render_data

    out = render_data({"u": "{{ .user }}", "dsn": "{{ .user }}:{{ .pw }}@db"},
                      {"user": b"app", "pw": b"\x00\xff"})
    assert out == {"u": b"app", "dsn": b"app:\x00\xff@db"}
    many = {f"k{i}": "{{ repeat 400 .v }}" for i in range(5)}
    with pytest.raises(TemplateLimitExceeded, match="template for key 'k2'"):
        render_data(many, {"v": b"x"}, Limits(max_bytes=1000))
    with pytest.raises(InvalidTemplate, match="template for key 'bad'"):
        render_data({"bad": "{{ .nope }}"}, {"v": b"x"})


def test_deep_nesting_is_a_bound_not_a_crash() -> None:
    for tpl in ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
                "{{ if 1 }}" * 3000 + "x" + "{{ end }}" * 3000):
        with pytest.raises(TemplateLimitExceeded):
            render(tpl, {})
    assert render("{{ " + "(" * 50 + "1" + ")" * 50 + " }}", {}) == b"1"


_PIECES = ["{{", "}}", "{{- ", " -}}", "{{/*", "*/}}", " ", "\n", ".", ".a", "$", "$x", ":=",
           "=", "|", "(", ")", ",", '"s"', "`r`", "'c'", "1", "-2", "1.5", "0x", "if", "else",
           "end", "range", "with", "define", "template", "block", "break", "continue", "nil",
           "true", "upper", "index", "printf", '"%d"', "len", "eq", "and", "list", "dict",
           "repeat", "b64dec", "toJson", "fromYaml", "x", "\\", '"', "\x00", "é", "\xff"]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=30), st.binary(max_size=8))
def test_any_input_gives_output_or_invalid_template(pieces: list[str], value: bytes) -> None:
    """Fuzz: whatever the template, the result is bytes or an InvalidTemplate, never another
    exception (a crash of the worker) and never the value in a message."""
    try:
        out = render("".join(pieces), {"a": value + b"\x01marker"}, Limits(timeout=1.0))
    except InvalidTemplate as exc:
        assert "marker" not in str(exc)
        assert "engine error" not in str(exc)  # an exception of ours, caught as a last resort
    else:
        assert isinstance(out, bytes)
