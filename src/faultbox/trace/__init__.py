"""The in-memory event log of a test, its indexes and queries, and the real-time monitors."""
