"""Placeholder: being written."""

from flask import Blueprint

bp = Blueprint("cms_limits_api", __name__)
