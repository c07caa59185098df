"""A second partner CMS, written from the published docs alone (README, docs/partner-contract.md,
docs/api/*.openapi.json, docs/conformance.md, docs/fidelity.md, examples/).

It exists to prove those documents are enough to build a CMS that `scanpay certify` passes,
and to carry planted defects (`defects.py`) that certify must catch. It shares no code with
sim_cms: a stranger vendor's CMS, with its own SQLite storage.
"""
