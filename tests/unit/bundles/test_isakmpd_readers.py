"""The readers behave like isakmpd's conf.c and libkeynote on small hand-written inputs (§1.1, §2.2)."""

from __future__ import annotations

import pytest

from bundles.renderers.readers.isakmpd_conf import parse_conf, split_list, structure_problems, weak_tokens
from bundles.renderers.readers.keynote import (
    KeyNoteSyntaxError,
    Token,
    decode_string,
    parse_assertion,
    read_policy,
    split_assertions,
    tokenize,
    tokenize_conditions,
)

# --- isakmpd.conf -----------------------------------------------------------------------------------


def test_it_joins_a_line_ending_in_a_backslash_with_the_next() -> None:
    conf = parse_conf("[General]\nListen-on=a\\\n b\n")
    assert conf.get("General", "Listen-on") == "a   b"  # backslash and newline become two spaces


def test_it_joins_continuations_in_comments_and_headers_too() -> None:
    conf = parse_conf("# a comment\\\n[General]\nA=1\n[Gen\\\neral]\nB=2\n")
    assert conf.comments == ["# a comment  [General]"]
    assert [p.kind for p in conf.no_section] == ["ignoring line due to no section"]
    assert conf.section_names == ["Gen  eral"]


def test_it_does_not_continue_when_a_space_follows_the_backslash() -> None:
    conf = parse_conf("[S]\nA=x\\ \nB=y\n")
    assert conf.section("S").values == {"A": "x\\", "B": "y"}  # type: ignore[union-attr]


def test_it_treats_only_the_first_byte_as_a_comment_marker() -> None:
    conf = parse_conf("[S]\n# comment\n; comment\nTransforms=AES-SHA # not a comment\n #x\n")
    assert conf.comments == ["# comment", "; comment"]
    assert conf.get("S", "Transforms") == "AES-SHA # not a comment"
    assert [p.text for p in conf.syntax_errors] == [" #x"]


def test_it_splits_a_tag_line_at_the_first_equals_sign() -> None:
    conf = parse_conf("[S]\nName=a=b\nSpaced = v \nTwo words=w\n")
    assert conf.section("S").values == {"Name": "a=b", "Spaced": "v", "Two": "w"}  # type: ignore[union-attr]


def test_it_gives_an_indented_tag_line_an_empty_tag() -> None:
    conf = parse_conf("[S]\n  Name=v\n")
    assert conf.section("S").values == {"": "v"}  # type: ignore[union-attr]
    assert len(conf.empty_tags) == 1
    assert conf.problems


def test_it_drops_an_unterminated_last_line() -> None:
    conf = parse_conf("[S]\nA=1\nB=2")
    assert conf.section("S").values == {"A": "1"}  # type: ignore[union-attr]
    assert conf.unterminated == "B=2"


def test_it_keeps_the_first_of_duplicate_tags_case_insensitively() -> None:
    conf = parse_conf("[S]\nA=1\na=2\n[s]\nB=3\n")
    assert conf.section_names == ["S"]
    assert conf.get("s", "A") == "1"
    assert conf.get("S", "b") == "3"
    assert [p.text for p in conf.duplicates] == ["a=2"]
    assert [p.text for p in conf.reopened_sections] == ["[s]"]


def test_it_ends_a_section_name_at_the_first_bracket() -> None:
    conf = parse_conf("[Phase 1]junk]\nDefault=p\n[a]b]\nX=1\n")
    assert conf.section_names == ["Phase 1", "a"]


def test_it_drops_tag_lines_after_an_unmatched_header_or_before_any_header() -> None:
    conf = parse_conf("A=0\n[broken\nA=1\n[ok]\nB=2\n")
    assert conf.section_names == ["ok"]
    assert [p.text for p in conf.no_section] == ["A=0", "A=1"]
    assert [p.text for p in conf.unmatched_headers] == ["[broken"]


def test_it_reports_a_line_without_equals_sign_and_ignores_blank_ones() -> None:
    conf = parse_conf("[S]\n\n \t\nnonsense\n\r\n")
    assert [p.text for p in conf.syntax_errors] == ["nonsense", "\r"]


def test_it_reads_crlf_files_like_isakmpd() -> None:
    conf = parse_conf("[General]\r\nListen-on=192.0.2.1\r\n")
    assert conf.get("General", "Listen-on") == "192.0.2.1"  # CR is trailing whitespace of the value


def test_it_trims_values_like_conf_c() -> None:
    conf = parse_conf("[S]\nA=\t  v \t\nB=\r\nC=x\0y\nD=x \0\n")
    assert conf.section("S").values == {"A": "v", "B": "\r", "C": "x", "D": "x "}  # type: ignore[union-attr]


def test_it_splits_lists_like_conf_get_list() -> None:
    assert split_list("a, b,,c") == (["a", "b", "c"], 1)
    assert split_list("a ,b") == (["a ", "b"], 0)  # conf.c trims no trailing space before a comma


def test_it_finds_dangling_references_empty_items_and_unknown_suites() -> None:
    conf = parse_conf(
        "[Phase 1]\nDefault=peer\n[Phase 2]\nConnections=c1,,c2\n[c1]\nISAKMP-peer=peer\nConfiguration=qm\n"
        "[peer]\nID=missing-id\nConfiguration=mm\n[mm]\nTransforms=AES-256-SHA2-256-GRP14-RSA_SIG,AES-TYPO\n"
        "[qm]\nSuites=QM-ESP-AES-256-SHA2-256-PFS-GRP14-SUITE\n"
    )
    assert structure_problems(conf) == [
        "[Phase 2]:Connections has 1 empty list item(s)",
        "[Phase 2]:Connections names section [c2], which does not exist",
        "[peer]:ID names section [missing-id], which does not exist",
        "[mm]:Transforms item 'AES-TYPO' is neither a section nor a built-in name",
    ]


def test_it_finds_weak_algorithms_as_whole_tokens_unless_legacy() -> None:
    assert weak_tokens("AES-256-SHA2-256-GRP14-RSA_SIG") == []
    assert weak_tokens("QM-ESP-AES-256-SHA2-256-PFS-GRP20-SUITE") == []
    assert weak_tokens("3DES-SHA-GRP2-RSA_SIG") == ["3DES", "GRP2"]
    assert weak_tokens("3DES_CBC") == ["3DES"]
    assert weak_tokens("HMAC_MD5") == ["MD5"]
    assert weak_tokens("MODP_1024") == ["MODP_1024"]
    conf = parse_conf("[t]\nENCRYPTION_ALGORITHM=DES_CBC\nGROUP_DESCRIPTION=MODP_2048\n")
    assert structure_problems(conf) == ["[t]:ENCRYPTION_ALGORITHM uses the weak algorithm DES ('DES_CBC')"]
    assert structure_problems(conf, legacy=True) == []


# --- KeyNote ----------------------------------------------------------------------------------------

MINIMAL = 'Authorizer: "POLICY"\nConditions: a == "b" -> "true";\n'


def test_it_separates_assertions_only_at_two_consecutive_newlines() -> None:
    assert split_assertions("A: x\n\nB: y\n") == ["A: x\n", "B: y\n"]
    assert split_assertions("A: x\n \t\nB: y\n") == ["A: x\n \t\nB: y\n"]  # a blank line is not empty
    assert split_assertions("A: x\r\n\r\nB: y\r\n") == ["A: x\r\n\r\nB: y\r\n"]  # CRLF never separates
    assert split_assertions("\n\n\nA: x\n\n \n\n") == ["\nA: x\n"]  # whitespace-only chunks are dropped


def test_it_splits_fields_at_lines_that_do_not_start_with_whitespace() -> None:
    assertion = parse_assertion('authorizer: "POLICY"\nLICENSEES: "a" ||\n\t"b"\nConditions:\n  x == "y";\n')
    assert list(assertion.fields) == ["Authorizer", "Licensees", "Conditions"]
    assert assertion.fields["Licensees"].text == ' "a" ||\n\t"b"'
    assert assertion.tokens("Licensees") == [Token("STRING", "a"), Token("||", "||"), Token("STRING", "b")]


def test_it_matches_field_names_as_prefixes_like_whichkeyword() -> None:
    assert list(parse_assertion('Auth: "POLICY"\nCond: true;\n').fields) == ["Authorizer", "Conditions"]
    with pytest.raises(KeyNoteSyntaxError):
        parse_assertion('Authorizer: "POLICY"\nRemark: x\n')


def test_it_accepts_comment_lines_only_at_the_start_of_an_assertion() -> None:
    assertion = parse_assertion("# generated\n" + MINIMAL)
    assert assertion.comments == ["# generated"]
    # A '#' line later on belongs to the field above it; the Conditions lexer then eats it.
    later = parse_assertion('Authorizer: "POLICY"\nConditions: a == "b"\n# why\n\t-> "true";\n')
    assert [t.kind for t in later.tokens("Conditions")] == ["VARIABLE", "==", "STRING", "->", "STRING", ";"]


def test_it_rejects_a_comment_before_keynote_version() -> None:
    with pytest.raises(KeyNoteSyntaxError, match="first field"):
        parse_assertion("# generated\nKeyNote-Version: 2\n" + MINIMAL)
    assert next(iter(parse_assertion("KeyNote-Version: 2\n" + MINIMAL).fields)) == "KeyNote-Version"


@pytest.mark.parametrize(
    "text",
    [
        'Authorizer: "POLICY"\nAuthorizer: "POLICY"\n',  # a field twice
        "Conditions: true;\n",  # no Authorizer
        ' Authorizer: "POLICY"\n',  # the first field indented
        "KeyNote-Version: 3\n" + MINIMAL,
        'Authorizer: "POLICY"\nno colon here\n',
    ],
)
def test_it_rejects_assertions_libkeynote_rejects(text: str) -> None:
    with pytest.raises(KeyNoteSyntaxError):
        parse_assertion(text)


def test_it_decodes_string_escapes_like_mystrncpy() -> None:
    assert decode_string('a\\"b\\\\c') == 'a"b\\c'
    assert decode_string("\\n\\t\\r\\f") == "\n\t\r\f"
    assert decode_string("\\101\\0\\q\\18") == "A0q18"
    assert decode_string("\\012x") == "\nx"
    assert decode_string("trailing\\") == "trailing"


def test_it_joins_a_backslash_newline_and_swallows_the_indentation() -> None:
    tokens = tokenize(' "x509-base64:\\\n\t\tMIIB\\\n   CCAj" ', "licensees")
    assert tokens == [Token("STRING", "x509-base64:MIIBCCAj")]


def test_it_refuses_a_raw_newline_inside_a_string() -> None:
    with pytest.raises(KeyNoteSyntaxError):
        tokenize_conditions('remote_id == "a\nb" -> "true";')


def test_it_refuses_a_carriage_return_between_tokens() -> None:
    with pytest.raises(KeyNoteSyntaxError):
        tokenize_conditions('a == "b"\r\n\t-> "true";')


def test_it_takes_the_longest_string_like_flex() -> None:
    # A quote right after a backslash may close a string or not; flex takes the longest match. So a
    # value ending in a backslash cannot be quoted safely: "a\\" runs on to the next quote.
    assert tokenize_conditions('"a\\\\" || "') == [Token("STRING", 'a\\" || ')]
    with pytest.raises(KeyNoteSyntaxError):
        tokenize_conditions('remote_id == "a\\\\" || remote_id == "b" -> "true";')
    assert tokenize_conditions('"a\\"b"') == [Token("STRING", 'a"b')]


def test_it_tokenizes_every_conditions_operator() -> None:
    text = '!(a ~= "x") || @n <= 3 && &f >= 1.5 -> { b != "y" -> "true"; } ; c . d < e > f'
    assert [t.kind for t in tokenize_conditions(text)] == [
        "!", "(", "VARIABLE", "~=", "STRING", ")", "||", "@", "VARIABLE", "<=", "NUM", "&&", "&", "VARIABLE",
        ">=", "FLOAT", "->", "{", "VARIABLE", "!=", "STRING", "->", "STRING", ";", "}", ";", "VARIABLE", ".",
        "VARIABLE", "<", "VARIABLE", ">", "VARIABLE",
    ]  # fmt: skip
    assert [t.kind for t in tokenize_conditions("true && false || truer")] == ["TRUE", "&&", "FALSE", "||", "VARIABLE"]


def test_it_tokenizes_licensees_with_k_of() -> None:
    kinds = [t.kind for t in tokenize('2-of("a", "b", "c") && $x', "licensees")]
    assert kinds == ["KOF", "(", "STRING", ",", "STRING", ",", "STRING", ")", "&&", "$", "VARIABLE"]


def test_it_reads_a_policy_file_and_reports_bad_assertions() -> None:
    policy = read_policy(MINIMAL + "\n" + "Bogus: 1\n" + "\n" + 'Authorizer: "POLICY"\nConditions: a == "b\n')
    assert len(policy.assertions) == 2
    assert policy.errors == ["assertion 2: unknown field name 'Bogus'"]
    assert policy.assertions[0].lex_errors == []
    assert policy.assertions[1].lex_errors
    assert policy.assertions[1].lex_errors[0].startswith("Conditions:")
