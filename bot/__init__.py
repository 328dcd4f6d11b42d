"""replbot: chat-ops for PostgreSQL streaming replication."""
