"""The ops CLI's commands: HTTP only, no database and no server modules."""
