"""Outbound: send to the Graph API within Meta's limits and track delivery statuses."""
