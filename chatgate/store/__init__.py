"""State: one Store protocol, with memory and SQLite implementations."""
