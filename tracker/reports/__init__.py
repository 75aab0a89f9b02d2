"""Delivery reports: the callback endpoint, deciding reports, storing them, the spool."""
