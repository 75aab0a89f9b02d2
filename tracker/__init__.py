"""Send SMS through KIMISMS and track every message to its final delivery status."""

__version__ = "0.1.0"
