"""A page's HTML table is drawn from a table's declared columns: headers are their labels, cells their values."""

from __future__ import annotations

import pytest
from django.utils.html import format_html
from rest_framework import serializers

from psplan.columns import Table, column, text_cell

PEOPLE = Table(
    "Person",
    (
        column("name", "Name", serializers.CharField()),
        column("teams", "Teams", serializers.ListField(child=serializers.CharField())),
        column("active", "Active", serializers.BooleanField()),
        column(
            "email",
            "E-mail",
            serializers.CharField(allow_null=True),
            cell=lambda item: format_html('<a href="mailto:{}">{}</a>', item["email"], item["name"]),
        ),
    ),
)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "—"),
        ("", "—"),
        ([], "—"),
        (True, "Yes"),
        (False, "No"),
        (0, "0"),
        (["EMEA", "<APAC>"], "EMEA, &lt;APAC&gt;"),
        ("<script>", "&lt;script&gt;"),
    ],
)
def test_a_plain_cell_shows_the_value_as_people_read_it_and_escaped(value, shown):
    assert text_cell(value) == shown


def test_a_page_shows_the_columns_it_names_in_its_order_with_their_cells():
    page = PEOPLE.html("email", "name", "teams", "active")
    rows = page.rows([{"name": "Ann <A>", "teams": ["EMEA"], "active": False, "email": "ann@example.com"}])

    assert page.headers == ["E-mail", "Name", "Teams", "Active"]
    assert rows[0].cells == [
        '<a href="mailto:ann@example.com">Ann &lt;A&gt;</a>',
        "Ann &lt;A&gt;",
        "EMEA",
        "No",
    ]
    assert rows[0].item["name"] == "Ann <A>"


def test_a_page_naming_a_column_the_table_lacks_is_refused_when_declared():
    with pytest.raises(ValueError, match="Person has no column phone"):
        PEOPLE.html("name", "phone")
