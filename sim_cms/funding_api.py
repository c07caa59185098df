"""Placeholder: being written."""

from flask import Blueprint

bp = Blueprint("cms_funding_api", __name__)
