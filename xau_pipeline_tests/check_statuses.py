"""The check Partitions tab as the UI reads it: its GraphQL selection, and its ranges per day."""

from datetime import date, timedelta
from typing import Any

# The selection of the UI's check Partitions tab (AssetCheckPartitionStatuses).
CHECK_PARTITION_STATUSES = """
query Statuses($asset: AssetKeyInput!) {
  assetNodeOrError(assetKey: $asset) {
    ... on AssetNode {
      assetChecksOrError { ... on AssetChecks { checks { name partitionStatuses {
        ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
      } } } }
    }
  }
}
"""


def statuses_by_check(node: dict[str, Any]) -> dict[str, dict[str, str]]:
    """{check: {day: status}} from an asset node of CHECK_PARTITION_STATUSES (days not listed: missing)."""
    by_check: dict[str, dict[str, str]] = {}
    for check in node["assetChecksOrError"]["checks"]:
        days = by_check.setdefault(check["name"], {})
        for status_range in (check["partitionStatuses"] or {}).get("ranges", []):
            day, last = date.fromisoformat(status_range["startKey"]), date.fromisoformat(status_range["endKey"])
            while day <= last:
                days[day.isoformat()] = status_range["status"]
                day += timedelta(days=1)
    return by_check
