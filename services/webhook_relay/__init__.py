"""Webhook relay: every domain event to the business's CRMs, signed, retried, never lost."""
