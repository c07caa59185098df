"""Placeholder: being written."""

from flask import Blueprint

bp = Blueprint("cms_openapi", __name__)
