"""The background monitor: pure rules, the alert lifecycle, delivery through the outbox."""
