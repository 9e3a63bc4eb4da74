"""mkdocs hook: the last include marker points to the page that now holds its content.

Pages once included sections of README.md through lines `<!-- readme: HEADING -->`.
Those sections are now pages of this site. A marker that is still in a page is
replaced by a link to its page; a marker with no page fails the build, so no page can
silently show an empty section. Delete this hook (and its entry in mkdocs.yml) once no
page holds a marker.
"""

import re

from mkdocs.exceptions import PluginError

_MARKER = re.compile(r"^<!-- readme: (.+?) -->$", re.MULTILINE)
# heading of the former README section -> (page, its title, what it holds)
_MOVED = {
    "Reproduced so far": (
        "claims.md",
        "Claims, measured",
        "The table of every claim, measured, with its negative control, and the figures",
    ),
}


def on_page_markdown(markdown, page, config, files):
    if not _MARKER.search(markdown):
        return markdown
    up = "../" * page.file.src_uri.count("/")

    def link(match):
        heading = match.group(1)
        if heading not in _MOVED:
            raise PluginError(
                f"{page.file.src_uri}: the marker <!-- readme: {heading} --> names no "
                f"page; README sections are no longer included (known: {list(_MOVED)})"
            )
        target, title, what = _MOVED[heading]
        return f"{what} are on the page [{title}]({up}{target})."

    return _MARKER.sub(link, markdown)
