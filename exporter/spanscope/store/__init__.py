"""Store: the interaction and feedback store (SQLite or PostgreSQL), its queries and migrations."""
