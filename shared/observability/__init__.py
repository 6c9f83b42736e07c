"""Logs, metrics and (later) traces shared by every service."""
