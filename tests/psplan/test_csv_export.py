"""The shared CSV piece: cells a spreadsheet cannot run, rows that stream, API answers as tables."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from psplan.csv_export import Column, CSVRenderer, cell, csv_lines, csv_response, table_of


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://evil","x")', '\'=HYPERLINK("http://evil","x")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-12.50", "-12.50"),
        ("-7", "-7"),
        ("Acme = good", "Acme = good"),
        ("", ""),
        (None, ""),
        (True, "true"),
        (False, "false"),
        (3, 3),
        (Decimal("1E+3"), "1000"),
        (Decimal("-2500.50"), "-2500.50"),
        (date(2027, 1, 31), "2027-01-31"),
        (datetime(2027, 1, 31, 9, 30, tzinfo=UTC), "2027-01-31T09:30:00+00:00"),
        (["Services Calculator", "Open"], "Services Calculator; Open"),
        (["=1", "b"], "'=1; b"),
        ({"status": "pending"}, '{"status": "pending"}'),
    ],
)
def test_cells_are_written_so_no_spreadsheet_runs_them(value, written):
    assert cell(value) == written


def _parse(lines) -> list[list[str]]:
    return list(csv.reader(io.StringIO("".join(lines))))


def test_rows_stream_under_their_headers_with_quotes_where_needed():
    columns = [Column("name", "Opportunity"), Column("amount", "PS amount")]
    lines = list(
        csv_lines(columns, [{"name": 'Acme, "Big" deal', "amount": Decimal("10.00")}, {"name": "-x"}])
    )
    assert lines[0] == "Opportunity,PS amount\r\n"
    assert _parse(lines) == [["Opportunity", "PS amount"], ['Acme, "Big" deal', "10.00"], ["'-x", ""]]


def test_a_page_download_is_an_attachment_in_utf8():
    response = csv_response(
        filename="win-rate-by_quarter", columns=[Column("q", "Quarter")], rows=[{"q": "Q427"}]
    )
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="win-rate-by_quarter.csv"'
    assert b"".join(response.streaming_content) == b"Quarter\r\nQ427\r\n"


def test_an_api_page_becomes_one_row_per_item_with_nested_objects_flattened():
    page = {
        "count": 2,
        "next": None,
        "results": [
            {"iid": 1, "write_back": {"status": "pending", "error": None}, "labels": ["a", "b"]},
            {"iid": 2, "write_back": None, "labels": []},
        ],
    }
    columns, rows = table_of(page)
    assert [column.key for column in columns] == ["iid", "write_back.status", "write_back.error", "labels"]
    assert rows[1] == {"iid": 2, "write_back": None, "labels": []}


class _View:
    csv_columns = (Column("iid", "Issue"), Column("write_back.status", "Write-back"))
    csv_filename = "scoping-issues"


def test_the_renderer_uses_the_columns_a_view_declares_and_names_the_file():
    class Response(dict):
        status_code = 200

    response = Response()
    body = CSVRenderer().render(
        {"results": [{"iid": 7, "title": "=x", "write_back": {"status": "failed"}}]},
        renderer_context={"view": _View(), "response": response},
    )
    assert body == b"Issue,Write-back\r\n7,failed\r\n"
    assert response["Content-Disposition"] == 'attachment; filename="scoping-issues.csv"'


def test_the_renderer_writes_an_error_as_the_fields_and_messages():
    class Response(dict):
        status_code = 400

    body = CSVRenderer().render(
        {"close_qtr": ["Enter a fiscal quarter like Q323."]},
        renderer_context={"view": _View(), "response": Response()},
    )
    assert _parse([body.decode()]) == [["close_qtr"], ["Enter a fiscal quarter like Q323."]]
