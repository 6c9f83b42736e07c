"""Test support: isolated infrastructure and fake external APIs."""
