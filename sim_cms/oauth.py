"""Placeholder: being written."""

from flask import Blueprint

bp = Blueprint("cms_oauth", __name__)
