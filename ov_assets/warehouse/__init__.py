"""PostgreSQL: migrations (``sql/``, package data) and the partition loads."""
