"""Placeholder: being written."""

from flask import Blueprint

bp = Blueprint("cms_screen", __name__)
