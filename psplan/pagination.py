from __future__ import annotations

import re

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination

# ASCII digits only: str.isdigit() also accepts "²" and "٣", which int() then refuses or misreads.
_SMALL_WHOLE_NUMBER = re.compile(r"[0-9]{1,6}")


class StandardPagination(PageNumberPagination):
    """`{count, next, previous, results}`; a page size over the maximum is an error, not a silent clamp."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not _SMALL_WHOLE_NUMBER.fullmatch(raw) or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationError(
                {self.page_size_query_param: [f"Must be a whole number from 1 to {self.max_page_size}."]}
            )
        return int(raw)
