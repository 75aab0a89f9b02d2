"""The message domain: statuses, recipients, segments. Pure; imports only ``errors``."""
