from __future__ import annotations

from typing import Any

from rest_framework import serializers

from opportunities.choices import EMConfidence
from psplan.columns import money
from reporting.selectors import WIN_RATE_GROUPS

AMOUNT = {"max_digits": 20, "decimal_places": 2, "help_text": "Sum of PS amounts"}


class WinRateQuerySerializer(serializers.Serializer):
    group_by = serializers.ChoiceField(choices=list(WIN_RATE_GROUPS), default="quarter", required=False)


class WinRateGroupSerializer(serializers.Serializer):
    key = serializers.CharField(
        allow_blank=True,
        help_text="Quarter code, GitLab username or segment; empty when the issues have none",
    )
    won = serializers.IntegerField()
    lost = serializers.IntegerField()
    win_rate = serializers.FloatField(allow_null=True, help_text="won / (won + lost); null when both are 0")


class WinRateSerializer(serializers.Serializer):
    won = serializers.IntegerField()
    lost = serializers.IntegerField()
    win_rate = serializers.FloatField(allow_null=True, help_text="won / (won + lost); null when both are 0")
    groups = WinRateGroupSerializer(many=True)

    def to_representation(self, report: dict[str, Any]) -> dict[str, Any]:
        return report


class ForecastGroupSerializer(serializers.Serializer):
    close_quarter = serializers.CharField(allow_blank=True, help_text="e.g. Q325; empty without a close date")
    em_confidence = serializers.ChoiceField(choices=EMConfidence.choices)
    count = serializers.IntegerField()
    amount = serializers.DecimalField(**AMOUNT)


class ConfidenceTotalSerializer(serializers.Serializer):
    em_confidence = serializers.ChoiceField(choices=EMConfidence.choices)
    count = serializers.IntegerField()
    amount = serializers.DecimalField(**AMOUNT)


class QuarterTotalSerializer(serializers.Serializer):
    close_quarter = serializers.CharField(allow_blank=True)
    count = serializers.IntegerField()
    amount = serializers.DecimalField(**AMOUNT)


class ForecastSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Open opportunities")
    amount = serializers.DecimalField(**AMOUNT)
    currency = serializers.CharField(help_text="ISO 4217 code of every amount (PSPLAN_CURRENCY)")
    by_em_confidence = ConfidenceTotalSerializer(many=True)
    by_close_quarter = QuarterTotalSerializer(many=True)
    groups = ForecastGroupSerializer(many=True, help_text="One per close quarter and EM confidence")

    def to_representation(self, report: dict[str, Any]) -> dict[str, Any]:
        def with_money(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{**row, "amount": money(row["amount"])} for row in rows]

        return {
            "count": report["count"],
            "amount": money(report["amount"]),
            "currency": report["currency"],
            "by_em_confidence": with_money(report["by_em_confidence"]),
            "by_close_quarter": with_money(report["by_close_quarter"]),
            "groups": with_money(report["groups"]),
        }
