from __future__ import annotations

import html
import re

import pytest
import time_machine

from tests.reporting.datasets import NOW

_LINK = re.compile(r'<a href="(/(?:issues|opportunities)/\?[^"#]*)">([^<]+)</a>')


@pytest.fixture(autouse=True)
def frozen_clock():
    """Every report test runs on 20 December 2026, in Q427 (the fiscal year starts in February)."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def drill_links(content: bytes) -> list[tuple[str, str]]:
    """Each figure's drill-down link on a page: (URL, the figure as shown)."""
    return [(html.unescape(url), text.strip()) for url, text in _LINK.findall(content.decode())]
