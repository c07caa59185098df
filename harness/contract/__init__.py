"""The partner contract, generated from the records the harness itself uses.

- `doc`: the generated parts of docs/partner-contract.md (`python -m harness.contract.doc
  --write`).
- `openapi`: the OpenAPI document of the partner hooks (docs/api/partner-hooks.openapi.json).
"""
