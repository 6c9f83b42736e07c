"""The public REST API (`/v1`): businesses, numbers and keys; messages; conversations and
contacts; CRM webhooks. Its read models are projections of the event store."""
