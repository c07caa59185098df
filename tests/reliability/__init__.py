"""Reliability tiers: kill -9 at named points and seeded network faults (docs/reliability.md)."""
