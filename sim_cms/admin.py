"""Placeholder: being written."""

from typing import Any

from flask import Blueprint


def state_dump() -> dict[str, Any]:
    """Placeholder."""
    return {}


def add_admin_routes(bp: Blueprint) -> None:
    """Placeholder."""
