"""A reader for swanctl.conf (strongSwan's settings syntax), as settings_lexer.l/settings_parser.y read it.

Returns the file as a nested dict: sections are dicts, settings are strings. The rules that
matter for injection (docs/formats.md §7.1, pitfall 20):

- ``name {`` opens a section, ``}`` closes it; ``key = value`` is a setting;
- a value ends at a newline, ``#`` or ``}`` -- so ``id = a } x = y`` closes the section and
  adds ``x`` one level up; a value is one or more unquoted runs or quoted strings, joined with
  one space;
- unquoted runs: any characters except ``# } "`` and whitespace (``\\r`` is ignored);
- ``"..."``: ``\\n \\r \\t`` escapes, ``\\X`` is ``X``, backslash-newline joins lines, a raw
  newline stays in the string, ``\\r`` is dropped, an unterminated string is an error;
- names: any characters except ``# { } = "`` and whitespace; ``#`` starts a comment.

``strict=True`` (the default) also refuses what strongSwan would silently merge -- a setting or
section given twice -- and names containing ``.`` (unreachable by a settings path), ``include``
lines and ``name : template`` inheritance, none of which the renderers emit.
"""

from __future__ import annotations

from dataclasses import dataclass

Tree = dict[str, "Tree | str"]


class ReadError(ValueError):
    """strongSwan would refuse the file, or (strict) it contains something the renderers never write."""


@dataclass(frozen=True)
class _Tok:
    kind: str  # name | string | newline | { | } | =
    text: str
    line: int


_NAME_STOP = frozenset('#{}="\r\n\t ')
_VALUE_STOP = frozenset('#}"\r\n\t ')
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def _string(text: str, i: int, line: int) -> tuple[str, int, int]:
    """Read a quoted string starting after its opening quote; return (value, next index, line)."""
    out: list[str] = []
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(out), i + 1, line
        if c == "\r":
            i += 1
        elif c == "\\":
            if i + 1 >= len(text):
                break
            nxt = text[i + 1]
            if nxt == "\n" or text[i + 1 : i + 3] == "\r\n":
                i += 2 if nxt == "\n" else 3
                line += 1
            else:
                out.append(_ESCAPES.get(nxt, nxt))
                i += 2
        else:
            if c == "\n":
                line += 1
            out.append(c)
            i += 1
    raise ReadError(f"line {line}: unterminated string")


def _tokens(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, line, in_value = 0, 1, False
    while i < len(text):
        c = text[i]
        if c == "#":  # a comment, in or out of a value, runs to the end of the line
            while i < len(text) and text[i] != "\n":
                i += 1
            in_value = False
        elif c == "\n":
            toks.append(_Tok("newline", "\n", line))
            line += 1
            i += 1
            in_value = False
        elif c in "\t\r ":
            i += 1
        elif c == "}":
            toks.append(_Tok("}", c, line))
            i += 1
            in_value = False
        elif in_value and c == '"':
            value, i, line = _string(text, i + 1, line)
            toks.append(_Tok("string", value, line))
        elif in_value:
            j = i
            while j < len(text) and text[j] not in _VALUE_STOP:
                j += 1
            toks.append(_Tok("name", text[i:j], line))
            i = j
        elif c == '"':
            raise ReadError(f"line {line}: unexpected string")
        elif c in "{=":
            toks.append(_Tok(c, c, line))
            in_value = c == "="
            i += 1
        else:
            j = i
            while j < len(text) and text[j] not in _NAME_STOP:
                j += 1
            toks.append(_Tok("name", text[i:j], line))
            i = j
    return toks


def _check_name(tok: _Tok, strict: bool) -> str:
    if strict and ("." in tok.text or ":" in tok.text or tok.text == "include"):
        raise ReadError(f"line {tok.line}: name {tok.text[:40]!r} is not one the renderers write")
    return tok.text


def read(text: str, *, strict: bool = True) -> Tree:
    """Parse ``text`` into nested dicts; raise ReadError where strongSwan reports a syntax error."""
    toks = _tokens(text)
    root: Tree = {}
    stack: list[Tree] = [root]
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok.kind == "newline":
            i += 1
        elif tok.kind == "}":
            if len(stack) == 1:
                raise ReadError(f"line {tok.line}: '}}' without a section")
            stack.pop()
            i += 1
        elif tok.kind == "name" and i + 1 < len(toks) and toks[i + 1].kind == "{":
            name = _check_name(tok, strict)
            existing = stack[-1].get(name)
            if isinstance(existing, str) or (existing is not None and strict):
                raise ReadError(f"line {tok.line}: section {name!r} given twice")
            section: Tree = existing if isinstance(existing, dict) else {}
            stack[-1][name] = section
            stack.append(section)
            i += 2
        elif tok.kind == "name" and i + 1 < len(toks) and toks[i + 1].kind == "=":
            name = _check_name(tok, strict)
            i += 2
            parts: list[str] = []
            while i < len(toks) and toks[i].kind in ("name", "string"):
                parts.append(toks[i].text)
                i += 1
            if isinstance(stack[-1].get(name), dict) or (strict and name in stack[-1]):
                raise ReadError(f"line {tok.line}: setting {name!r} given twice")
            stack[-1][name] = " ".join(parts)
        else:
            raise ReadError(f"line {tok.line}: syntax error at {tok.text[:40]!r}")
    if len(stack) != 1:
        raise ReadError("unexpected end of file: a section is never closed")
    return root
