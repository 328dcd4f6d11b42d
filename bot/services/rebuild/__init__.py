"""The /rebuild runbook: preflight, plan, execution with rollback, recovery after a restart."""
