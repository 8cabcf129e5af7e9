"""The app's URLs plus bench/pages.py's plain baseline: the same rows from one values() query, plain template."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpResponse
from django.template import engines
from django.urls import include, path

PLAIN_ROWS: dict[str, Callable[[], object]] = {}
PLAIN_TEMPLATE = engines["django"].from_string(
    "<!doctype html><title>plain</title><main>{% for row in rows %}<div>"
    "{% for value in row.values %}<span>{{ value }}</span> {% endfor %}</div>{% endfor %}</main>"
)


def plain_view(request, name: str):
    return HttpResponse(PLAIN_TEMPLATE.render({"rows": list(PLAIN_ROWS[name]())}))


urlpatterns = [
    path("bench/plain/<str:name>/", plain_view),
    path("", include("psplan.urls")),
]
