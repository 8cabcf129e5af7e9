"""PlainSelect writes the same <select> as Django's Select, without the template engine."""

from __future__ import annotations

import pytest
from django import forms
from django.test.html import parse_html
from django.utils.safestring import mark_safe

from psplan.widgets import PlainSelect

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
