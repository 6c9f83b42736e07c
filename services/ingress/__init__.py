"""Ingress: verify Meta's signature, make the delivery durable, then answer 200."""
