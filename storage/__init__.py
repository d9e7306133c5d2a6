"""Durable state: conversation sessions (SQLite by default)."""
