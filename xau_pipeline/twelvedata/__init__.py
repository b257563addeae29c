"""Twelve Data REST client: windows, parsing, error classification and retries."""
