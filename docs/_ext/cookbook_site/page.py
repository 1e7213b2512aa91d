"""Which blocks of a page belong to one database: the rule the tests, downloads and Run share.

A page shows a difference between databases in sphinx-design tabs written with colon fences;
a ``tab-item`` whose ``:sync:`` names a backend holds that backend's blocks::

    ::::{tab-set}
    :sync-group: backend

    :::{tab-item} PostgreSQL
    :sync: postgresql
    ...
    :::
    ::::

Part of the cookbook site, not of the recipe library's API.
"""

from __future__ import annotations

import re

BACKENDS = ("sqlite", "postgresql", "mariadb")

_TAB_OPEN = re.compile(r"^(?P<fence>:{3,})\{tab-item\}[^\n]*\n(?P<options>(?:[ \t]*:[\w-]+:[^\n]*\n)*)", re.M)
_TABSET_OPEN = re.compile(r"^(?P<fence>:{3,})\{tab-set\}[^\n]*\n(?P<options>(?:[ \t]*:[\w-]+:[^\n]*\n)*)", re.M)
_SYNC = re.compile(r":sync:[ \t]*(\S+)")
_GROUP = re.compile(r":sync-group:[ \t]*(\S+)")


def _closing(text: str, opening: re.Match[str]) -> int:
    fence = opening.group("fence")
    found = re.compile(rf"^{fence}[ \t]*$", re.M).search(text, opening.end())
    return found.end() if found else len(text)


def backend_tabs(text: str, path: str = "<page>") -> list[tuple[int, int, str]]:
    """(start, end, backend) of every backend tab on a page.

    Any other tab in a ``:sync-group: backend`` tab-set is an error naming the page and line,
    so a misspelt ``:sync:`` cannot make a block run on every database.
    """
    groups = [
        (m.start(), _closing(text, m))
        for m in _TABSET_OPEN.finditer(text)
        if (group := _GROUP.search(m.group("options"))) and group.group(1) == "backend"
    ]
    tabs = []
    for m in _TAB_OPEN.finditer(text):
        sync = _SYNC.search(m.group("options"))
        name = sync.group(1) if sync else None
        if name is not None and name in BACKENDS:
            tabs.append((m.start(), _closing(text, m), name))
        elif any(s <= m.start() < e for s, e in groups):
            line = text.count("\n", 0, m.start()) + 1
            raise ValueError(
                f"{path}, line {line}: a tab in a backend tab-set needs ':sync:' set to one of "
                f"{', '.join(BACKENDS)}; found {name!r}"
            )
    return tabs
