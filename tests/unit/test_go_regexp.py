"""Rewrites with Go's regexp semantics: RE2 syntax, ``ReplaceAllString``'s loop and ``$``
expansion. Every expected value below was produced by Go 1.26's ``regexp`` package
(``regexp.MustCompile(pattern).ReplaceAllString(input, template)``; ``None``: Go's
``regexp.Compile`` refused the pattern)."""

from __future__ import annotations

import pytest

from secretsync.errors import InvalidInput
from secretsync.reconcile import go_regexp

GO_CASES = [
    # Python's re.sub gives "dev-passworddev-": Go skips the empty match after a match.
    ("(.*)", "dev-$1", "password", "dev-password"),
    ("a*", "X", "baaac", "XbXcX"),
    ("", "-", "abc", "-a-b-c-"),
    ("", "-", "", "-"),
    ("x*", "-", "abc", "-a-b-c-"),
    ("(a*)*", "X", "b", "XbX"),
    ("(a*)+", "-", "aab", "-b-"),
    ("^", "p-", "key", "p-key"),
    ("$", "-s", "key", "key-s"),
    (r"\b", "|", "ab cd", "|ab| |cd|"),
    (r"\z", "E", "ab", "abE"),
    ("(?m)^b", "X", "a\nb", "a\nX"),
    (".", "x", "a\nb", "x\nx"),
    ("(?s).", "x", "a\nb", "xxx"),
    # leftmost-first alternation and lazy / ungreedy flags
    ("a|ab", "X", "abab", "XbXb"),
    ("a+?", "X", "aaa", "XXX"),
    ("(?U)a+", "X", "aaa", "XXX"),
    ("(?i)KEY", "k", "aKeY", "ak"),
    # $ templates: numbers, names, braces, $$ and malformed references
    ("(?P<x>a)(b)?", "[$2|${x}|$1x|${1}x|$$|$|${1]", "xa", "x[|a||ax|$|$|${1]"),
    ("(a)", "$0", "a", "a"),
    ("(a)", "${0}", "a", "a"),
    ("(a)", "$01", "a", ""),
    ("(a)", "$10", "a", ""),
    ("(a)", "$", "a", "$"),
    ("(a)", "$$$1", "a", "$a"),
    ("(a)", "${}", "a", "${}"),
    ("(a)", "${x", "a", "${x"),
    ("(a)|(b)", "[$1$2]", "ab", "[a][b]"),
    ("(?<n>a)", "<$n>", "bab", "b<a>b"),
    ("(?P<n>a)", "$n_x", "a", ""),
    ("(?P<n>a)", "${n}_x", "a", "a_x"),
    (r"(?P<first>\w+)-(?P<second>\w+)", "${second}_$first", "my-secret", "secret_my"),
    ("a", "\\$1", "a", "\\"),
    ("a", "\\", "a", "\\"),
    (r"\$", "D", "a$b", "aDb"),
    # Unicode and character classes
    ("é", "$0$0", "aéb", "aééb"),
    (r"\pL+", "L", "ab1cé", "L1L"),
    ("[[:alpha:]]+", "W", "ab12", "W12"),
    ("(a+)(b+)?", "<$2$1>", "aab a", "<baa> <a>"),
    # ESO's rewrite guide
    ("path/to/my/secrets/(.*)", "$1", "path/to/my/secrets/username", "username"),
    ("[^a-zA-Z0-9 -]", "_", "foo/bar", "foo_bar"),
    ("[^a-zA-Z0-9 -]", "_", "foo$baz", "foo_baz"),
]

GO_REFUSES = ["(?=a)", "a{1001}", r"(a)\1", r"\C", r"\Z", "(", "[a", "a**"]


@pytest.mark.parametrize(("pattern", "template", "src", "want"), GO_CASES)
def test_replace_all_matches_go(pattern: str, template: str, src: str, want: str) -> None:
    assert go_regexp.replace_all(pattern, src, template) == want


@pytest.mark.parametrize("pattern", GO_REFUSES)
def test_patterns_go_refuses_are_invalid_input_naming_the_field(pattern: str) -> None:
    with pytest.raises(InvalidInput) as info:
        go_regexp.check(pattern, what="spec.dataFrom[0].rewrite[1].regexp.source")
    assert "spec.dataFrom[0].rewrite[1].regexp.source" in str(info.value)
    assert "invalid regular expression" in str(info.value)


def test_escaped_backslash_before_c_is_fine() -> None:
    assert go_regexp.replace_all(r"\\C", "a\\Cb", "x") == "axb"


def test_compile_is_cached() -> None:
    assert go_regexp.compile_go("(a)", what="w") is go_regexp.compile_go("(a)", what="w")
