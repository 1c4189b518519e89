"""Read isakmpd.conf exactly as isakmpd's ``conf.c`` does (docs/formats.md §1.1), for structural checks.

This is a port of ``conf_parse``/``conf_parse_line``/``conf_set_now``/``conf_get_list`` (conf.c 1.108),
including their quirks, because the point is to see a rendered file the way the daemon will:

- Lines end at LF only; a last line without LF is dropped.
- A backslash right before an LF turns both into spaces and joins the next physical line, wherever it
  is (in a comment, a header, a value).
- A comment is a line whose *first byte* is ``#`` or ``;``. ``#`` anywhere else is value text.
- ``[`` as the first byte starts a header; the name ends at the first ``]``, the rest is ignored. No
  ``]`` means every tag line up to the next header is dropped.
- A tag line splits at the first ``=``; the tag ends at the first space, TAB, ``=`` (or NUL), so an
  indented line has an empty tag. The value skips leading spaces/TABs and loses trailing C
  whitespace (but never its first character). Values are C strings: they end at a NUL.
- Section and tag names compare case-insensitively; for a repeated tag the first value wins.
- ``conf_get_list`` splits on ``,``, skips leading whitespace of an item, drops empty items and
  (a quirk of the C code) keeps trailing whitespace of every item but the last.

Everything isakmpd would only log (duplicates, syntax errors, dropped lines) is recorded, so tests
can assert that a generated file has none of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bundles.renderers.spec import WEAK_TOKENS

C_SPACE = " \t\n\v\f\r"  # isspace() in the C locale


@dataclass(frozen=True)
class Problem:
    line: int  # physical line number where the logical line starts (1-based)
    kind: str
    text: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.kind}: {self.text!r}"


@dataclass
class Section:
    name: str  # as first written
    tags: dict[str, tuple[str, str]] = field(default_factory=dict)  # lower-case tag -> (tag as written, value)

    def get(self, tag: str) -> str | None:
        entry = self.tags.get(tag.lower())
        return entry[1] if entry else None

    @property
    def tag_names(self) -> list[str]:
        return [written for written, _ in self.tags.values()]

    @property
    def values(self) -> dict[str, str]:
        return dict(self.tags.values())


@dataclass
class ParsedConf:
    sections: dict[str, Section] = field(default_factory=dict)  # lower-case name -> section, in file order
    comments: list[str] = field(default_factory=list)
    duplicates: list[Problem] = field(default_factory=list)  # conf_set_now: duplicate tag, ignoring
    syntax_errors: list[Problem] = field(default_factory=list)  # non-blank line without '='
    no_section: list[Problem] = field(default_factory=list)  # tag line before any (valid) header
    unmatched_headers: list[Problem] = field(default_factory=list)  # '[' without ']'
    reopened_sections: list[Problem] = field(default_factory=list)  # legal, but never generated
    empty_tags: list[Problem] = field(default_factory=list)  # indented tag lines
    unterminated: str | None = None  # the dropped last line, if it had no LF

    def section(self, name: str) -> Section | None:
        return self.sections.get(name.lower())

    def get(self, section: str, tag: str) -> str | None:
        found = self.section(section)
        return found.get(tag) if found else None

    @property
    def section_names(self) -> list[str]:
        return [s.name for s in self.sections.values()]

    @property
    def problems(self) -> list[Problem]:
        found = [
            *self.duplicates,
            *self.syntax_errors,
            *self.no_section,
            *self.unmatched_headers,
            *self.reopened_sections,
            *self.empty_tags,
        ]
        if self.unterminated is not None:
            found.append(Problem(0, "last line unterminated, ignored", self.unterminated))
        return found


def _cstr(text: str) -> str:
    """What C string functions see: everything up to the first NUL."""
    return text.split("\0", 1)[0]


def parse_conf(text: str) -> ParsedConf:
    """Parse ``text`` as isakmpd's conf_parse would (one character of ``text`` per byte of the file)."""
    conf = ParsedConf()
    state: dict[str, str | None] = {"section": None}  # conf_parse_line's static ``section``
    buf = list(text)
    line_start = 0
    line_no = first_line = 1
    for cp, char in enumerate(buf):
        if char != "\n":
            continue
        if cp > 0 and buf[cp - 1] == "\\":
            # An escaped newline: both bytes become spaces and the logical line goes on.
            buf[cp - 1] = buf[cp] = " "
        else:
            _parse_line(conf, state, "".join(buf[line_start:cp]), first_line)
            line_start = cp + 1
            first_line = line_no + 1
        line_no += 1
    if line_start != len(buf):
        conf.unterminated = "".join(buf[line_start:])
    return conf


def _parse_line(conf: ParsedConf, state: dict[str, str | None], line: str, ln: int) -> None:
    if line[:1] in ("#", ";"):
        conf.comments.append(line)
        return
    if line[:1] == "[":
        end = line.find("]", 1)
        if end == -1:
            conf.unmatched_headers.append(Problem(ln, "unmatched ']', ignoring until next section", line))
            state["section"] = None
            return
        name = _cstr(line[1:end])
        state["section"] = name
        if name.lower() in conf.sections:
            conf.reopened_sections.append(Problem(ln, "section header repeated", line))
        else:
            conf.sections[name.lower()] = Section(name)
        return
    eq = line.find("=")
    if eq == -1:
        if _cstr(line).lstrip(" \t"):
            conf.syntax_errors.append(Problem(ln, "syntax error", line))
        return
    section = state["section"]
    if section is None:
        conf.no_section.append(Problem(ln, "ignoring line due to no section", line))
        return
    tag = _cstr(re.split(r"[ \t=]", line, maxsplit=1)[0])
    raw = line[eq + 1 :]
    value = list(raw[len(raw) - len(raw.lstrip(" \t")) :])
    # conf.c trims from the end with isspace() but never looks at the value's first character.
    j = len(value) - 1
    while j > 0 and value[j] in C_SPACE:
        value[j] = "\0"
        j -= 1
    val = _cstr("".join(value))
    if tag == "":
        conf.empty_tags.append(Problem(ln, "empty tag (indented line?)", line))
    target = conf.sections[section.lower()]
    if tag.lower() in target.tags:
        conf.duplicates.append(Problem(ln, f"duplicate tag [{section}]:{tag}, ignoring", line))
        return
    target.tags[tag.lower()] = (tag, val)


def split_list(value: str) -> tuple[list[str], int]:
    """``conf_get_list``: the items of a comma list and how many empty items it skipped."""
    items: list[str] = []
    empty = 0
    parts = value.split(",")
    for index, part in enumerate(parts):
        item = part.lstrip(C_SPACE)
        if index == len(parts) - 1:
            item = item.rstrip(C_SPACE)  # only the value's own trimming reaches the last item
        if item == "":
            empty += 1
            continue
        items.append(item)
    return items, empty


# --- structural checks over a parsed file ---------------------------------------------------------

# Tags whose value names another section (a list for the Phase 2 roots).
_REFERENCE_TAGS = frozenset({"isakmp-peer", "configuration", "id", "remote-id", "local-id"})
_LIST_REFERENCE_TAGS = frozenset({"connections", "passive-connections"})
_LIST_TAGS = _LIST_REFERENCE_TAGS | {"transforms", "suites", "protocols", "listen-on"}
# Tags of hand-written transform sections that carry algorithm names (§1.4).
_ALGORITHM_TAGS = frozenset(
    {"encryption_algorithm", "hash_algorithm", "group_description", "transform_id", "authentication_algorithm"}
)

_GROUPS = "1|2|5|14|15|16|17|18|19|20|21|26|27|28|29|30"
# isakmpd's synthesised names (conf.c conf_load_defaults, §1.3). A Transforms/Suites item that is
# neither a section in the file nor one of these names silently matches nothing at negotiation time.
BUILTIN_MAIN_MODE = re.compile(
    rf"(BLF|3DES|CAST|AES|AES-128|AES-192|AES-256)-(MD5|SHA|SHA2-256|SHA2-384|SHA2-512)"
    rf"(-GRP({_GROUPS}))?(-DSS|-RSA_SIG)?"
)
BUILTIN_QUICK_MODE = re.compile(
    r"QM-(ESP|AH)(-TRP)?"
    r"(-(3DES|CAST|BLF|AES|AES-128|AES-192|AES-256|AESCTR|AESCTR-128|AESCTR-192|AESCTR-256"
    r"|AESGCM-128|AESGCM-192|AESGCM-256|AESGMAC-128|AESGMAC-192|AESGMAC-256|NULL))?"
    rf"(-(MD5|SHA|RIPEMD|SHA2-256|SHA2-384|SHA2-512))?(-PFS(-GRP({_GROUPS}))?)?-SUITE"
)


def weak_tokens(value: str) -> list[str]:
    """The WEAK_TOKENS that occur in ``value`` as whole tokens (delimited by ``-``, ``_``, ``,``, space or the ends)."""
    return [
        token
        for token in WEAK_TOKENS
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])", value, flags=re.IGNORECASE)
    ]


def _missing_section(conf: ParsedConf, section_name: str, where: str) -> list[str]:
    """A reference to a section the file lacks: isakmpd would just find nothing there at negotiation time."""
    if conf.section(section_name) is None:
        return [f"{where} names section [{section_name}], which does not exist"]
    return []


def _phase1_problems(conf: ParsedConf) -> list[str]:
    """Every [Phase 1] value names a peer section, whatever its tag (the tag is a peer address)."""
    phase1 = conf.section("Phase 1")
    if phase1 is None:
        return []
    return [
        problem for tag, value in phase1.tags.values() for problem in _missing_section(conf, value, f"[Phase 1]:{tag}")
    ]


def _list_items(where: str, lowered: str, value: str) -> tuple[list[str], list[str]]:
    """(items, problems) of a value as conf_get_list sees it; a non-list tag is its own single item.

    Empty items and items with surrounding whitespace are silently kept or dropped by isakmpd, so
    they are reported.
    """
    if lowered not in _LIST_TAGS:
        return [value], []
    items, empty = split_list(value)
    problems: list[str] = []
    if empty:
        problems.append(f"{where} has {empty} empty list item(s)")
    if any(item != item.strip(C_SPACE) for item in items):
        problems.append(f"{where} has an item with surrounding whitespace (isakmpd keeps it)")
    return items, problems


def _builtin_name_problems(conf: ParsedConf, where: str, lowered: str, items: list[str]) -> list[str]:
    """Transforms/Suites items that are neither sections nor isakmpd's synthesised names match nothing."""
    pattern = BUILTIN_MAIN_MODE if lowered == "transforms" else BUILTIN_QUICK_MODE
    return [
        f"{where} item {item!r} is neither a section nor a built-in name"
        for item in items
        if conf.section(item) is None and not pattern.fullmatch(item)
    ]


def _reference_problems(
    conf: ParsedConf, section: Section, where: str, *, lowered: str, value: str, items: list[str]
) -> list[str]:
    """Dangling section references of one tag: Phase 2 connection lists, single references, transform names."""
    if section.name.lower() == "phase 2" and lowered in _LIST_REFERENCE_TAGS:
        return [problem for item in items for problem in _missing_section(conf, item, where)]
    if lowered in _REFERENCE_TAGS:
        return _missing_section(conf, value, where)
    if lowered in ("transforms", "suites"):
        return _builtin_name_problems(conf, where, lowered, items)
    return []


def _weak_algorithm_problems(where: str, lowered: str, value: str) -> list[str]:
    """Weak algorithms named by a tag that selects algorithms (transform lists and hand-written transforms)."""
    if lowered not in ("transforms", "suites") and lowered not in _ALGORITHM_TAGS:
        return []
    return [f"{where} uses the weak algorithm {token} ({value!r})" for token in weak_tokens(value)]


def _tag_problems(conf: ParsedConf, section: Section, tag: str, value: str, *, legacy: bool) -> list[str]:
    """All structural problems of one tag, in a fixed order: list syntax, references, weak algorithms."""
    where = f"[{section.name}]:{tag}"
    lowered = tag.lower()
    items, problems = _list_items(where, lowered, value)
    problems += _reference_problems(conf, section, where, lowered=lowered, value=value, items=items)
    if not legacy:
        problems += _weak_algorithm_problems(where, lowered, value)
    return problems


def structure_problems(conf: ParsedConf, *, legacy: bool = False) -> list[str]:
    """What would make isakmpd misbehave quietly: dangling references, empty list items, weak algorithms."""
    problems = _phase1_problems(conf)
    for section in conf.sections.values():
        for tag, value in section.tags.values():
            problems += _tag_problems(conf, section, tag, value, legacy=legacy)
    return problems
