"""Widgets rendered without the template engine: pages like triage show dozens of selects with 60 options, and
the issue page's few inputs each cost a template render."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django import forms
from django.forms.models import ModelChoiceIterator
from django.utils.choices import BaseChoiceIterator
from django.utils.html import conditional_escape as escape
from django.utils.safestring import SafeString, mark_safe


# Escaped as format_html and flatatt escape: text already marked safe stays as it is.
@lru_cache(maxsize=256)
def _options(choices: tuple[tuple[str, str], ...]) -> str:
    """The options' escaped markup, built once for a list of choices that many selects share."""
    return "".join(f'<option value="{escape(value)}">{escape(label)}</option>' for value, label in choices)


def _attributes(attrs: dict[str, Any]) -> str:
    """HTML attributes as Django's flatatt writes them: in name order, values escaped, then the ones that are
    True alone; False and None left out."""
    valued = sorted((name, value) for name, value in attrs.items() if not isinstance(value, bool | None))
    alone = sorted(name for name, value in attrs.items() if value is True)
    return "".join(f' {name}="{escape(value)}"' for name, value in valued) + "".join(
        f" {name}" for name in alone
    )


def select_html(name: str, choices: tuple[tuple[str, str], ...], selected: str, **attrs: Any) -> SafeString:
    """A <select> of flat choices with `selected` chosen; the options' markup is shared between calls."""
    chosen = f'<option value="{escape(selected)}">'
    options = _options(choices).replace(chosen, f"{chosen[:-1]} selected>", 1)
    return mark_safe(f'<select name="{escape(name)}"{_attributes(attrs)}>{options}</select>')


class ChoiceList(BaseChoiceIterator):
    """(value, label) pairs a page built itself, given to a choice field as they are: a plain list is normalized
    pair by pair by the field and again by its widget, a millisecond for a select of 60 EMs."""

    def __init__(self, pairs):
        self.pairs = list(pairs)

    def __iter__(self):
        return iter(self.pairs)


class PlainSelect(forms.Select):
    """Same markup as Django's Select for flat choices, built in Python: far cheaper on long pages."""

    def render(self, name, value, attrs=None, renderer=None):
        choices = tuple((str(v), str(label)) for v, label in self._flat_choices())
        selected = "" if value is None else str(value)
        return select_html(name, choices, selected, **self.build_attrs(self.attrs, attrs))

    def _flat_choices(self):
        if isinstance(self.choices, ModelChoiceIterator):
            yield from _model_choices(self.choices.field)
            return
        for option_value, label in self.choices:
            if isinstance(label, (list, tuple)):
                yield from label
            else:
                yield ("" if option_value is None else getattr(option_value, "value", option_value), label)


def _model_choices(field: forms.ModelChoiceField):
    """A model field's choices from one plain query (its iterator would open a server-side cursor). A field
    whose label is one column (`label_field`) is read with values_list(): no model instance per option."""
    if field.empty_label is not None:
        yield ("", field.empty_label)
    label_field = getattr(field, "label_field", None)
    if label_field is not None:
        yield from field.queryset.values_list(field.to_field_name or "pk", label_field)
        return
    for obj in field.queryset:
        yield (field.prepare_value(obj), field.label_from_instance(obj))


def _template_attributes(attrs: dict[str, Any]) -> str:
    """Attributes as Django's widget templates write them: in their order, True alone, False left out."""
    return "".join(
        f" {name}" if value is True else f' {name}="{escape(str(value))}"'
        for name, value in attrs.items()
        if value is not False
    )


class _PlainInput:
    """The markup of Django's input.html, built in Python."""

    def render(self, name, value, attrs=None, renderer=None):
        widget = self.get_context(name, value, attrs)["widget"]
        shown = "" if widget["value"] is None else f' value="{escape(str(widget["value"]))}"'
        return mark_safe(
            f'<input type="{escape(widget["type"])}" name="{escape(name)}"{shown}'
            f"{_template_attributes(widget['attrs'])}>"
        )


class PlainTextInput(_PlainInput, forms.TextInput):
    pass


class PlainDateInput(_PlainInput, forms.DateInput):
    pass


class PlainTextarea(forms.Textarea):
    """The markup of Django's textarea.html, built in Python."""

    def render(self, name, value, attrs=None, renderer=None):
        widget = self.get_context(name, value, attrs)["widget"]
        text = escape(widget["value"]) if widget["value"] else ""
        return mark_safe(
            f'<textarea name="{escape(name)}"{_template_attributes(widget["attrs"])}>\n{text}</textarea>'
        )
