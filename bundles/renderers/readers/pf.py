"""A reader for pf.conf and ipf.rules (and iked.conf, whose lexer is pfctl's): statements and tokens.

Enough of pfctl's lexer (parse.y ``lgetc``/``yylex``) to count rules, list macros and tables, and
split every statement into tokens, so the tests can prove that no input value adds, removes or
reshapes a rule (docs/security.md T3):

- a backslash before a newline joins the two lines, anywhere, even inside a comment (so a
  comment that ends in ``\\`` swallows the next line, exactly as pfctl does);
- ``#`` outside quotes starts a comment, even in the middle of a word;
- ``"..."`` and ``'...'`` strings: a backslash before the quote, a space or a tab escapes it,
  backslash-newline joins, any other backslash is literal;
  a string still open at the end of a line is an error here (pfctl drops the newline, iked keeps
  it; the renderers never emit either, so the stricter reading only makes the checks stricter);
- a newline ends a statement unless it is inside ``{ ... }`` (pf lists may span lines), so an
  unbalanced ``{`` swallows the following lines and ``}`` without ``{`` is an error.

One deliberate difference: ``/`` stays inside words (pfctl splits ``10.0.0.0/24`` into three
tokens); a CIDR as one token is what the checks want to compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Characters pfctl returns as single tokens; the two-character operators come first.
_OPERATORS = ("!=", "<=", ">=", "<>", "><")
_PUNCT = frozenset("{}()<>!=,")
_RULE_ACTIONS = frozenset({"pass", "block", "match", "antispoof", "log", "count", "auth", "call", "skip"})
# pfctl's keyword table (parse.y ``lookup()``), the one-word entries of old and current versions.
# pfctl returns these as keyword tokens, never as STRING, so ``tag = "10.0.0.1"`` is a syntax
# error: a macro (``varset: STRING '=' ...``) cannot be named by one.
PF_KEYWORDS = frozenset(
    """
    all altq anchor antispoof any bandwidth binat bitmask block burst cbq code const counters crop
    debug default divert drop fastroute file fingerprints flags floating flush for fragment from
    global group hfsc hostid in include inet inet6 keep label limit linkshare load log loginterface
    match max min modulate nat no on once optimization out overload parent pass persist pflow port
    prio priority priq probability proto qlimit queue quick random rdomain rdr realtime reassemble
    return rtable rule scrub set skip sloppy state table tag tagged tbrsize timeout to tos ttl
    upperlimit user yes
    """.split()
)


class ReadError(ValueError):
    """The text is not something pfctl (or ipf, or iked) would read."""


@dataclass(frozen=True)
class Token:
    kind: str  # word | string | punct
    text: str  # a string's decoded content


@dataclass(frozen=True)
class Statement:
    line: int  # first physical line (1-based)
    tokens: tuple[Token, ...]

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(t.text for t in self.tokens)


@dataclass
class Ruleset:
    statements: list[Statement] = field(default_factory=list)
    rules: list[Statement] = field(default_factory=list)
    macros: dict[str, str] = field(default_factory=dict)
    tables: dict[str, tuple[str, ...]] = field(default_factory=dict)
    options: list[Statement] = field(default_factory=list)  # set ..., anchors, everything else


def _join_continuations(text: str) -> list[tuple[int, str]]:
    """Physical lines joined at backslash-newline, each with its first line number."""
    out: list[tuple[int, str]] = []
    pending = ""
    start = 1
    for number, line in enumerate(text.split("\n"), start=1):
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def _lex_line(line: str, number: int) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(line):
        c = line[i]
        if c in " \t":
            i += 1
        elif c == "#":
            break
        elif c in "\"'":
            quote = c
            i += 1
            chars: list[str] = []
            while True:
                if i >= len(line):
                    raise ReadError(f"line {number}: unterminated string")
                c = line[i]
                if c == "\\" and i + 1 < len(line) and line[i + 1] in (quote, " ", "\t"):
                    chars.append(line[i + 1])
                    i += 2
                elif c == quote:
                    i += 1
                    break
                else:
                    chars.append(c)
                    i += 1
            tokens.append(Token("string", "".join(chars)))
        elif line[i : i + 2] in _OPERATORS:
            tokens.append(Token("punct", line[i : i + 2]))
            i += 2
        elif c in _PUNCT:
            tokens.append(Token("punct", c))
            i += 1
        else:
            j = i
            while j < len(line) and line[j] not in " \t#\"'" and line[j] not in _PUNCT:
                j += 1
            tokens.append(Token("word", line[i:j]))
            i = j
    return tokens


def statements(text: str) -> list[Statement]:
    """The statements of ``text`` in order; raises ReadError where pfctl would report a syntax error."""
    if "\r" in text or "\x00" in text:
        raise ReadError("carriage return or NUL in the file")
    out: list[Statement] = []
    current: list[Token] = []
    depth = 0
    first = 0
    for number, line in _join_continuations(text):
        for token in _lex_line(line, number):
            if not current:
                first = number
            current.append(token)
            if token.text == "{" and token.kind == "punct":
                depth += 1
            elif token.text == "}" and token.kind == "punct":
                depth -= 1
                if depth < 0:
                    raise ReadError(f"line {number}: '}}' without '{{'")
        if depth == 0 and current:
            out.append(Statement(first, tuple(current)))
            current = []
    if current:
        raise ReadError(f"line {first}: '{{' is never closed")
    return out


def _table(stmt: Statement) -> tuple[str, tuple[str, ...]]:
    words = stmt.words
    if len(words) < 4 or words[1] != "<" or words[3] != ">":
        raise ReadError(f"line {stmt.line}: malformed table definition")
    inside: tuple[str, ...] = ()
    if "{" in words:
        start = words.index("{")
        end = words.index("}")
        inside = tuple(w for w in words[start + 1 : end] if w != ",")
    return words[2], inside


def read(text: str) -> Ruleset:
    """Classify every statement: rule, macro definition, table definition, or option."""
    ruleset = Ruleset()
    for stmt in statements(text):
        ruleset.statements.append(stmt)
        toks = stmt.tokens
        head = toks[0]
        if head.kind == "word" and len(toks) >= 2 and toks[1].text == "=" and toks[1].kind == "punct":
            if head.text in PF_KEYWORDS:
                raise ReadError(f"line {stmt.line}: {head.text!r} is a pf keyword, not a macro name")
            if head.text in ruleset.macros:
                raise ReadError(f"line {stmt.line}: macro {head.text} defined twice")
            ruleset.macros[head.text] = " ".join(t.text for t in toks[2:])
        elif head.kind == "word" and head.text == "table":
            name, entries = _table(stmt)
            if name in ruleset.tables:
                raise ReadError(f"line {stmt.line}: table <{name}> defined twice")
            ruleset.tables[name] = entries
        elif head.kind == "word" and (head.text in _RULE_ACTIONS or head.text.startswith("@")):
            ruleset.rules.append(stmt)
        else:
            ruleset.options.append(stmt)
    return ruleset
