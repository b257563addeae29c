# Metadata lives in pyproject.toml (PEP 621); this shim stays because the project layout names it.
from setuptools import setup

setup()
