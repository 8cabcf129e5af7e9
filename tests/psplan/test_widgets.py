"""The plain widgets write the same markup as Django's, without the template engine."""

from __future__ import annotations

from datetime import date

import pytest
from django import forms
from django.test.html import parse_html
from django.utils.safestring import mark_safe

from psplan.widgets import PlainDateInput, PlainSelect, PlainTextarea, PlainTextInput

CHOICES = [("", "—"), ("a&b", "A <b> & co"), ("1", "One"), ("safe", mark_safe("<i>marked safe</i>"))]
ATTRS = {
    "id": 'id_"x"',
    "aria-label": "Engagement <manager>",
    "required": True,
    "disabled": False,
    "data-n": 0,
}


@pytest.mark.parametrize("value", ["", "a&b", "1", "safe", "not a choice", None])
@pytest.mark.parametrize("attrs", [{}, ATTRS])
def test_a_plain_select_is_the_markup_djangos_select_renders(value, attrs):
    plain = PlainSelect(choices=CHOICES).render("engagement_manager", value, attrs=attrs)
    django = forms.Select(choices=CHOICES).render("engagement_manager", value, attrs=attrs)

    assert parse_html(plain) == parse_html(django)
    assert plain.count(" selected") == (value in {None, "", "a&b", "1", "safe"})  # None is the empty choice


INPUT_ATTRS = {
    "id": 'id_"x"',
    "maxlength": 500,
    "required": True,
    "disabled": False,
    "aria-label": "Keep <open>",
}
TEXTS = [None, "", "plain", 'He said "no" & <left>', mark_safe("<b>marked safe</b>"), 0]


@pytest.mark.parametrize("value", TEXTS)
@pytest.mark.parametrize("attrs", [{}, INPUT_ATTRS])
@pytest.mark.parametrize(
    ("plain_widget", "django_widget"),
    [
        (PlainTextInput(), forms.TextInput()),
        (
            PlainTextInput(attrs={"placeholder": "https://…"}),
            forms.TextInput(attrs={"placeholder": "https://…"}),
        ),
        (PlainTextarea(attrs={"rows": 2}), forms.Textarea(attrs={"rows": 2})),
    ],
    ids=["text", "text with attrs", "textarea"],
)
def test_plain_text_widgets_write_exactly_djangos_markup(plain_widget, django_widget, value, attrs):
    assert plain_widget.render("reason", value, attrs=attrs) == django_widget.render(
        "reason", value, attrs=attrs
    )


@pytest.mark.parametrize("value", [None, "", date(2026, 12, 31), "2026-13-45 typed by hand"])
def test_a_plain_date_input_writes_exactly_djangos_markup(value):
    plain = PlainDateInput(attrs={"type": "date"}).render(
        "keep_open_until", value, attrs={"id": "id_k", "required": True}
    )
    django = forms.DateInput(attrs={"type": "date"}).render(
        "keep_open_until", value, attrs={"id": "id_k", "required": True}
    )

    assert plain == django
