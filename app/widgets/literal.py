"""User values (run ids and names, file names, image ids, label names, dataset paths, error
texts) inside the app's texts, shown as the characters they are, never as markup.

Streamlit renders as Markdown the body of st.error / warning / info / success / markdown /
caption / subheader / toast, st.image captions, st.progress texts and widget labels: GitHub's
Markdown plus LaTeX `$…$`, `:color[…]` directives and `:material/…:` icons (HTML is shown as
text: the app never passes unsafe_allow_html). A value written into such a text unescaped is
markup: `?run=[x](http://evil)` a live link, `![](http://evil/x.png)` an image fetched from
elsewhere, `www.evil.example` or `http://…` an autolink, `_a_` italics. Plain-text places need
nothing: st.text, st.code, st.dataframe cells, selectbox and multiselect options.

`literal` is for values; `sentence` for ssl_core's sentences (errors, reasons, notes), which
write commands between backticks (`ssl-explorer index RUN_ID`): those stay code spans, where
nothing is markup, and the rest is literal.

Checked in Chromium against Streamlit 1.67 (tests/app/test_app_escaping.py renders ids, labels,
names and links so): every payload above, emphasis, code, HTML tags, entities, LaTeX, directives,
icons, headings and lists show as their characters.
"""

from __future__ import annotations

import re

# Every ASCII punctuation character that starts Markdown, LaTeX, directive, HTML or entity
# syntax (CommonMark shows a backslash-escaped punctuation character as itself). '-', '+', '='
# mean something only at the start of a line (lists, rules, headings), and run ids are full of
# '-', so those are escaped there only.
_INLINE = re.compile(r"([\\`*_\[\]<>#!|~$:&@.])")
_LINE_START = re.compile(r"(?m)^(\s*)([-+=])")
# Autolinks (`http://`, `www.`, e-mail) and `:material/…:` icons are found in the text after the
# escapes are resolved, so a backslash cannot stop them: an invisible word joiner (U+2060) after
# each ':', before each '@' and between 'www' and '.' does.
_TEXT_PATTERNS = re.compile(r"(:)|(@)|(?i:(www)(?=\.))")
WORD_JOINER = "\u2060"
_CODE_SPAN = re.compile(r"`([^`\n]+)`")


def _join(match: re.Match) -> str:
    colon, at, www = match.groups()
    return colon + WORD_JOINER if colon else WORD_JOINER + at if at else www + WORD_JOINER


def literal(value: object) -> str:
    """`value` as Markdown that Streamlit shows as its characters (with invisible word joiners
    where an autolink or icon would start)."""
    text = _TEXT_PATTERNS.sub(_join, str(value))
    return _LINE_START.sub(r"\1\\\2", _INLINE.sub(r"\\\1", text))


def sentence(value: object) -> str:
    """An ssl_core sentence (an exception, a reason) as Markdown: its `…` spans as code, the
    rest `literal`."""
    parts = _CODE_SPAN.split(str(value))  # text, code, text, code, ..., text
    return "".join(code(part) if i % 2 else literal(part) for i, part in enumerate(parts))


def code(value: object) -> str:
    """`value` as an inline code span (a path): fenced by more backticks than it holds in a row,
    so none of its own can end the span. Inside a span only `:material/…:` icons are still
    markup, hence the word joiners there too."""
    text = _TEXT_PATTERNS.sub(_join, str(value).replace("\n", " "))
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
