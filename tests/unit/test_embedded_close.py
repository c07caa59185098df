"""Closing the embedded sims stores what their background writer still holds first, so no
row is written after the data directory is gone (a traceback on stderr, at the end of a
clean `scanpay certify`)."""

from __future__ import annotations

import logging

import httpx
import pytest

from harness.embedded import embedded_sims
from simkit.batch_writer import writer_for


def test_closing_the_sims_stores_the_last_journal_rows_before_the_files_go(
        caplog: pytest.LogCaptureFixture) -> None:
    with embedded_sims() as sims:
        with httpx.Client(base_url=sims.cms_url, transport=sims.cms_transport) as cms:
            cms.get("/openapi.json")  # journaled: a row queued for the writer
        dbs = [sims.trustly.extensions["sim_trustly"].db, sims.cms.extensions["sim_cms"].db]
    with caplog.at_level(logging.ERROR, logger="simkit.batch_writer"):
        for db in dbs:
            assert writer_for(db).flush(timeout_s=5.0)
    assert not [r for r in caplog.records if r.name == "simkit.batch_writer"], caplog.text
