"""The small core every domain folder stands on: configuration, database, errors."""
