"""mkdocs hook: pages include sections of README.md, so the two never disagree.

A line `<!-- readme: HEADING -->` in a page is replaced by the body of the README's
`## HEADING...` section (its text up to the next `## ` heading, without the heading
itself). Paths into `docs/` are made relative to the page, and the README's
`<img src=... width=...>` tags become Markdown images, so that mkdocs checks them
(`--strict` fails on a missing figure). A marker whose section does not exist fails the
build.
"""

import re
from pathlib import Path

from mkdocs.exceptions import PluginError

_README = Path(__file__).resolve().parents[2] / "README.md"
_MARKER = re.compile(r"^<!-- readme: (.+?) -->$", re.MULTILINE)
_IMG = re.compile(r'<img src="([^"]+)" width="([^"]+)">')


def _sections(text):
    sections, name, body = {}, None, []
    for line in text.splitlines():
        if line.startswith("## "):
            if name is not None:
                sections[name] = "\n".join(body).strip("\n")
            name, body = line[3:].strip(), []
        elif name is not None:
            body.append(line)
    if name is not None:
        sections[name] = "\n".join(body).strip("\n")
    return sections


def _section(sections, heading, page):
    matches = [body for name, body in sections.items() if name.startswith(heading)]
    if len(matches) != 1:
        raise PluginError(
            f"{page.file.src_uri}: README.md has {len(matches)} sections whose heading "
            f"starts with {heading!r}; headings are {list(sections)}"
        )
    return matches[0]


def on_page_markdown(markdown, page, config, files):
    if not _MARKER.search(markdown):
        return markdown
    sections = _sections(_README.read_text(encoding="utf-8"))
    up = "../" * page.file.src_uri.count("/")

    def include(match):
        body = _section(sections, match.group(1), page)
        body = _IMG.sub(lambda m: f'![]({m.group(1)}){{ width="{m.group(2)}" }}', body)
        return body.replace("](docs/", f"]({up}")

    return _MARKER.sub(include, markdown)
