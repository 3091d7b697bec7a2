"""Persistence: engine and unit of work, tables, queries and migrations. No rules live here."""
