"""Conversation: rebuild each conversation from its events and answer each customer message."""
