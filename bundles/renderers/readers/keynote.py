"""Read a KeyNote policy file (isakmpd.policy) exactly as libkeynote does (docs/formats.md §2.2).

Ports of ``kn_read_asserts`` (environment.c), ``keynote_parse_assertion``/``whichkeyword``
(parse_assertion.c) and the flex scanner with ``mystrncpy`` (keynote.l), quirks included:

- Assertions are separated by two consecutive LF bytes. A line of spaces/TABs is *not* a separator,
  and neither is CRLF CRLF.
- A field starts at the beginning of a line (``Name:``); a line that starts with a space, TAB or
  ``#`` continues the current field. Field names compare case-insensitively as a *prefix* of the
  keyword (``Auth:`` is ``Authorizer:``), each may appear once.
- ``#`` lines are comments only at the very start of an assertion, and a comment there makes a
  following ``KeyNote-Version`` a syntax error (it must be the first thing in the assertion).
- Strings: flex takes the *longest* match of ``"([^"\\n]|\\\\["\\n.])*"``, so a quote right after a
  backslash may or may not close the string; escapes are then decoded by ``mystrncpy``
  (``\\n \\t \\r \\f``, octal ``\\ooo``, backslash-newline swallows the following whitespace, any
  other ``\\x`` is ``x``). A raw newline inside a string is not part of any token: a syntax error.
- Whitespace between tokens is space, TAB or LF only; CR, VT, FF or any other stray byte is an error.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

C_SPACE = " \t\n\v\f\r"  # isspace() in the C locale
KEYWORDS = ("KeyNote-Version", "Local-Constants", "Authorizer", "Licensees", "Conditions", "Signature", "Comment")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class KeyNoteSyntaxError(ValueError):
    """libkeynote would reject this assertion or field (keynote_errno = ERROR_SYNTAX)."""


@dataclass(frozen=True)
class Token:
    kind: str  # STRING, VARIABLE, NUM, FLOAT, TRUE, FALSE, KOF, or the operator itself ("&&", "->", ...)
    value: str  # the decoded string for STRING, else the matched text


@dataclass
class Field:
    name: str  # the canonical keyword, e.g. "Conditions"
    written: str  # the name as written in the file
    text: str  # everything after the ':' up to the end of the field (continuation lines included)


@dataclass
class Assertion:
    text: str
    comments: list[str] = field(default_factory=list)
    fields: dict[str, Field] = field(default_factory=dict)  # canonical name -> field, in file order
    lex_errors: list[str] = field(default_factory=list)

    def tokens(self, name: str) -> list[Token]:
        return tokenize(self.fields[name].text, _MODES[name])


@dataclass
class Policy:
    assertions: list[Assertion]
    errors: list[str]  # assertions libkeynote would refuse


# --- kn_read_asserts --------------------------------------------------------------------------------


def split_assertions(text: str) -> list[str]:
    """The assertions of a file: split at two consecutive LFs, chunks without a non-space character dropped."""
    chunks: list[str] = []
    start, flag, valid = 0, False, False
    for i, char in enumerate(text):
        if char == "\n":
            if flag:
                if valid:
                    chunks.append(text[start:i])
                valid, flag, start = False, False, i + 1
            else:
                flag = True
            continue
        flag = False
        if char not in C_SPACE:
            valid = True
    if valid:
        chunks.append(text[start:])
    return chunks


# --- keynote_parse_assertion --------------------------------------------------------------------------


def _keyword(name: str) -> str:
    # whichkeyword(): strncasecmp("<keyword>:", name, len(name)), so any non-empty prefix matches.
    lowered = name.translate(_ASCII_LOWER)
    if name:
        for keyword in KEYWORDS:
            if (keyword.lower() + ":").startswith(lowered):
                return keyword
    raise KeyNoteSyntaxError(f"unknown field name {name[:40]!r}")


def _at(buf: str, k: int) -> str:
    """``buf[k]``, or the terminating NUL libkeynote's C string has one past the end."""
    return buf[k] if k < len(buf) else "\0"


def _first_field_start(buf: str) -> int:
    """Skip leading whitespace; the first field must then start at the beginning of a line."""
    i = len(buf) - len(buf.lstrip(C_SPACE))
    if i >= len(buf) or (i != 0 and buf[i - 1] != "\n"):
        raise KeyNoteSyntaxError("the first field does not start at the beginning of a line")
    return i


def _comment_end(buf: str, start: int) -> int:
    """Where the ``#`` line at ``start`` ends (its LF, or the end of the buffer)."""
    end = buf.find("\n", start + 1)
    return len(buf) if end == -1 else end


def _find_colon(buf: str, start: int) -> int:
    """The ``:`` that ends the field name starting at ``start``; none means libkeynote gives up."""
    colon = buf.find(":", start)
    if colon == -1:
        raise KeyNoteSyntaxError(f"text without a field name: {buf[start : start + 40]!r}")
    return colon


def _field_end(buf: str, colon: int) -> tuple[int, bool]:
    """(end of the field's text, whether the assertion ends there) for the field whose ``:`` is at ``colon``.

    The text runs until an LF followed by a character that cannot continue a field (not whitespace,
    not ``#``); two LFs in a row or the end of the buffer also end the assertion.
    """
    n = len(buf)
    k = colon
    while True:
        k += 1
        if k == n:
            return k, True
        if buf[k] != "\n":
            continue
        if k + 1 < n and buf[k + 1] == "\n":
            return k, True
        follower = _at(buf, k + 1)
        if follower not in C_SPACE and follower != "#":
            return k, False


def _check_version(text: str, *, after_field: bool) -> None:
    """KeyNote-Version must come first (not even after a comment) and must say ``"2"`` (or ``2``)."""
    if after_field:
        raise KeyNoteSyntaxError("KeyNote-Version must be the first field (and not follow a comment)")
    version = tokenize(text, "version")
    if [(t.kind, t.value) for t in version] != [("STRING", "2")]:
        raise KeyNoteSyntaxError("KeyNote-Version must be 2")


def _add_field(assertion: Assertion, written: str, text: str, *, after_field: bool) -> str:
    """Record one field under its canonical keyword, with libkeynote's checks, in its order; return the keyword."""
    name = _keyword(written)
    if name == "KeyNote-Version":
        _check_version(text, after_field=after_field)
    if name in assertion.fields:
        raise KeyNoteSyntaxError(f"field {name} appears twice")
    assertion.fields[name] = Field(name=name, written=written, text=text)
    return name


def _check_nothing_after(buf: str, end: int) -> None:
    """After the assertion's last field, the rest of that line may hold only whitespace."""
    rest_of_line = buf[end + 1 :].split("\n", 1)[0]
    if any(char not in C_SPACE for char in rest_of_line):
        raise KeyNoteSyntaxError("text after the end of the assertion")


def parse_assertion(buf: str) -> Assertion:
    """Split one assertion into its fields, or raise KeyNoteSyntaxError where libkeynote fails."""
    if "\0" in buf:
        raise KeyNoteSyntaxError("NUL byte in an assertion")  # libkeynote strdup()s and then reads past it
    i = _first_field_start(buf)
    assertion = Assertion(text=buf)
    seen_field = False
    while i < len(buf):
        if buf[i] == "#":  # only reached at the start of the assertion: later '#' lines continue a field
            end = _comment_end(buf, i)
            assertion.comments.append(buf[i:end])
            seen_field = True
            i = end + 1
            continue
        colon = _find_colon(buf, i)
        end, end_of_assertion = _field_end(buf, colon)
        name = _add_field(assertion, buf[i:colon], buf[colon + 1 : end], after_field=seen_field)
        seen_field = True
        if end_of_assertion or name == "Signature":
            _check_nothing_after(buf, end)
            break
        i = end + 1
    if "Authorizer" not in assertion.fields:
        raise KeyNoteSyntaxError("no Authorizer field")
    return assertion


def read_policy(text: str) -> Policy:
    """Every assertion of a policy file, parsed; lexer errors of the evaluated fields recorded too."""
    assertions: list[Assertion] = []
    errors: list[str] = []
    for number, chunk in enumerate(split_assertions(text), start=1):
        try:
            assertion = parse_assertion(chunk)
        except KeyNoteSyntaxError as exc:
            errors.append(f"assertion {number}: {exc}")
            continue
        for name in ("Authorizer", "Licensees", "Conditions", "Local-Constants"):
            if name in assertion.fields:
                try:
                    assertion.tokens(name)
                except KeyNoteSyntaxError as exc:
                    assertion.lex_errors.append(f"{name}: {exc}")
        assertions.append(assertion)
    return Policy(assertions=assertions, errors=errors)


# --- the flex scanner ---------------------------------------------------------------------------------

# flex start conditions per field (keynote.l): ACTIONSTRING, KEYPREDICATE, SIGNERINIT, LOCALINIT,
# KEYNOTEVERSION. Rules without a start condition are active in every mode (%s is inclusive).
_MODES = {
    "Conditions": "conditions",
    "Licensees": "licensees",
    "Authorizer": "authorizer",
    "Signature": "authorizer",
    "Local-Constants": "local",
    "KeyNote-Version": "version",
}
_ALL = frozenset({"conditions", "licensees", "authorizer", "local", "version"})
_ACT = frozenset({"conditions"})
_ACT_KEY = frozenset({"conditions", "licensees"})
_OPERATORS = ("+", "->", "{", "}", ";", "!", "~=", "==", "!=", "<", ">", "<=", ">=", "-", "*", "/", "%", "^")

_DIGITS = "0123456789"
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"

# (modes, pattern, kind, first characters) in flex rule order: the longest match wins, ties go to
# the earlier rule. The first characters only let the scanner skip rules that cannot match.
_RULES: list[tuple[frozenset[str], re.Pattern[str] | None, str, str]] = [
    (frozenset({"licensees"}), re.compile(r"[1-9][0-9]*-of"), "KOF", _DIGITS[1:]),
    *((_ACT_KEY, re.compile(re.escape(op)), op, op[0]) for op in ("(", ")", "&&", "||")),
    *((_ACT, re.compile(re.escape(op)), op, op[0]) for op in _OPERATORS),
    (_ALL, re.compile(r"\."), ".", "."),
    (_ACT, re.compile("true"), "TRUE", "t"),
    (_ACT, re.compile("false"), "FALSE", "f"),
    (_ALL, re.compile(r"#[^\n]*"), "COMMENT", "#"),
    (frozenset({"local"}), re.compile("="), "=", "="),
    (frozenset({"licensees"}), re.compile(","), ",", ","),
    (_ALL - {"version"}, re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*"), "VARIABLE", _LETTERS),
    (_ALL, re.compile(r"\$"), "$", "$"),
    (_ACT, re.compile("@"), "@", "@"),
    (_ACT, re.compile("&"), "&", "&"),
    (_ACT, re.compile(r"[0-9]+\.[0-9]+"), "FLOAT", _DIGITS),
    (frozenset({"version"}), re.compile("[0-9]+"), "STRING", _DIGITS),
    (_ACT, re.compile("[0-9]+"), "NUM", _DIGITS),
    (_ALL, None, "STRING", '"'),  # litstring, matched by _string_length
    (_ALL, re.compile("[ \t\n]"), "SPACE", " \t\n"),
]
# mode -> first character -> the rules that may match there, still in flex order
_BY_FIRST: dict[str, dict[str, list[tuple[re.Pattern[str] | None, str]]]] = {mode: {} for mode in _ALL}
for _modes, _pattern, _kind, _first in _RULES:
    for _mode in _modes:
        for _char in _first:
            _BY_FIRST[_mode].setdefault(_char, []).append((_pattern, _kind))


def _string_length(text: str, pos: int) -> int:
    """Length of the longest ``"([^"\\n]|\\\\["\\n.])*"`` at ``pos`` (0: none).

    A ``"`` or LF may sit inside the string only right after a backslash; every ``"`` that can end
    the string is a candidate, and flex keeps the last one before the string must stop.
    """
    if text[pos] != '"':
        return 0
    best = 0
    for k in range(pos + 1, len(text)):
        char = text[k]
        escaped = k - 1 > pos and text[k - 1] == "\\"
        if char == '"':
            best = k - pos + 1
            if not escaped:
                break
        elif char == "\n" and not escaped:
            break
    return best


def tokenize(text: str, mode: str = "conditions") -> list[Token]:
    """The tokens flex returns for a field's text in ``mode`` (comments and whitespace dropped)."""
    if mode not in _ALL:
        raise ValueError(f"unknown mode {mode!r}")
    return list(_tokenize(text, mode))


@functools.lru_cache(maxsize=256)
def _tokenize(text: str, mode: str) -> tuple[Token, ...]:
    rules = _BY_FIRST[mode]
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        best_len, best_kind = 0, ""
        for pattern, kind in rules.get(text[pos], ()):
            if pattern is None:
                length = _string_length(text, pos)
            else:
                match = pattern.match(text, pos)
                length = match.end() - pos if match else 0
            if length > best_len:
                best_len, best_kind = length, kind
        if best_len == 0:
            raise KeyNoteSyntaxError(f"unexpected {text[pos]!r} at offset {pos}")
        lexeme = text[pos : pos + best_len]
        pos += best_len
        if best_kind in ("SPACE", "COMMENT"):
            continue
        if best_kind == "STRING" and lexeme.startswith('"'):
            lexeme = decode_string(lexeme[1:-1])
        tokens.append(Token(best_kind, lexeme))
    return tuple(tokens)


def tokenize_conditions(text: str) -> list[Token]:
    return tokenize(text, "conditions")


def _octal(body: str, i: int) -> tuple[int, int]:
    """keynote.l get_octal(): (value, characters used) for an escape at body[i], value 0 if none."""

    def is_octal(k: int) -> bool:
        return k < len(body) and body[k] in "01234567"

    rest = len(body) - i - 1
    if body[i] == "0":
        if rest > 0 and is_octal(i + 1):
            value, used = int(body[i + 1]), 2
            if rest - 1 > 0 and is_octal(i + 2):
                value, used = value * 8 + int(body[i + 2]), 3
            return value, used
    elif is_octal(i) and rest - 1 > 0 and is_octal(i + 1) and is_octal(i + 2):
        return (int(body[i]) * 64 + int(body[i + 1]) * 8 + int(body[i + 2])) & 0xFF, 3
    return 0, 0


def decode_string(body: str) -> str:
    """keynote.l mystrncpy(): the value of a string literal's body (between the quotes)."""
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        char = body[i]
        if char != "\\":
            if char == "\0":
                break
            out.append(char)
            i += 1
            continue
        i += 1
        if i >= n:
            break  # a trailing backslash is dropped
        char = body[i]
        if char == "\n":  # backslash-newline: join, swallowing the next line's indentation
            i += 1
            while i < n and body[i] in C_SPACE:
                i += 1
            continue
        value, used = _octal(body, i)
        if value:
            out.append(chr(value))
            i += used
            continue
        if char == "\0":
            break
        out.append({"n": "\n", "t": "\t", "r": "\r", "f": "\f"}.get(char, char))
        i += 1
    return "".join(out)
