"""Dispatch: claiming due messages and handing them to KIMISMS, paced and led."""
