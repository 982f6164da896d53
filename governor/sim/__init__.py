"""Simulated boards: documented physics behind fake trees. Everything it produces is labelled simulated."""
