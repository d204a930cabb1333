"""SmartEdit synthetic-data pipeline: the plain-Python core library (never imports prefect)."""

__version__ = "0.1.0"
PIPELINE_VERSION = __version__
