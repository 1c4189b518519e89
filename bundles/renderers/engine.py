"""The one Jinja2 environment every config template renders in.

- ``StrictUndefined``: a template that names a variable nobody passed fails loudly at render time
  instead of writing an empty string into a VPN config.
- No autoescaping (these are not HTML); each format's quoting is done by the explicit filters
  below, and every value was allow-listed when the spec was built.
- Templates are compiled once per environment (docs/architecture.md: compiling costs 3x rendering); build one
  environment per process with ``environment()`` and keep it.
- Search path: a site's override directory first (when given), then ``templates/configs``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path

import jinja2

DEFAULT_TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "configs"


class RenderError(RuntimeError):
    """A template could not be rendered (missing variable, unsafe value, broken override)."""


# Values reach the templates already allow-listed. These guards are the belt to those braces: a
# value with a line break, NUL or a format's quote character never reaches a file, whatever a
# (possibly site-overridden) template does with it.
_LINE_BREAKS = re.compile(r"[\r\n\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def _plain(value: object) -> str:
    text = str(value)
    if _LINE_BREAKS.search(text):
        raise RenderError("refusing a value with a line break or NUL")
    return text


def conf_value(value: object) -> str:
    """An isakmpd.conf value: one line, no trailing backslash (continuation), no list comma."""
    text = _plain(value)
    if text.endswith("\\") or "," in text or text != text.strip():
        raise RenderError(f"refusing isakmpd.conf value {text[:40]!r}")
    return text


def quoted(value: object) -> str:
    """A double-quoted string for KeyNote, iked.conf, pf.conf and swanctl.conf: ``\\`` and ``"`` escaped."""
    text = _plain(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sh_quote(value: object) -> str:
    """A POSIX sh single-quoted word."""
    return "'" + _plain(value).replace("'", "'\"'\"'") + "'"


def wrap(value: object, width: int = 64) -> list[str]:
    """``value`` cut into pieces of ``width`` characters (for base64 continuation lines)."""
    text = _plain(value)
    return [text[i : i + width] for i in range(0, len(text), width)] or [""]


@functools.lru_cache(maxsize=8)
def _cached(paths: tuple[str, ...]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(paths)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - config files, not HTML; each format quotes through its own filter
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=-1,
    )
    env.filters["conf"] = conf_value
    env.filters["quoted"] = quoted
    env.filters["sh"] = sh_quote
    env.filters["wrap"] = wrap
    env.filters["plain"] = _plain
    return env


def environment(overrides: Sequence[str | Path] = ()) -> jinja2.Environment:
    """The shared environment for a search path (site overrides first, then the built-in templates)."""
    paths = (*(str(Path(p)) for p in overrides if Path(p).is_dir()), str(DEFAULT_TEMPLATES))
    return _cached(paths)


def render(env: jinja2.Environment, name: str, **context: object) -> str:
    """Render one template; LF line ends, exactly one trailing newline, no trailing spaces."""
    try:
        text = env.get_template(name).render(**context)
    except jinja2.UndefinedError as exc:
        raise RenderError(f"{name}: {exc.message}") from exc
    except jinja2.TemplateError as exc:
        raise RenderError(f"{name}: {exc}") from exc
    if "\r" in text:
        raise RenderError(f"{name}: rendered a carriage return")
    lines = [line.rstrip(" \t") for line in text.split("\n")]
    return "\n".join(lines).rstrip("\n") + "\n"
