"""Serving: the PostgreSQL tables that the API, the dashboard and SQL consumers read."""
