"""Placeholder: being written."""

from flask import Blueprint

bp = Blueprint("cms_egms_api", __name__)
