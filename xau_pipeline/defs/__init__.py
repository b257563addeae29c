"""Dagster definitions, one folder per domain: candles (assets and checks), automation (schedules and sensors), alerts, maintenance."""
