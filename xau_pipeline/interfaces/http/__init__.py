"""The read-only HTTP API (`xau-pipeline serve`): stored candles, their gaps, health and a chart page.

`create_app` (in `app.py`) builds the FastAPI application; `server.serve` runs it with uvicorn.
This package's `links` module imports nothing heavy, so the Dagster code location can build chart
URLs without loading FastAPI.
"""
