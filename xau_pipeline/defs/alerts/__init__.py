"""Alerts: a sensor turning a series' failed checks, staleness or failing runs into one notice per
incident and one when it clears, delivered to a webhook and/or by e-mail (README: Alerts)."""
