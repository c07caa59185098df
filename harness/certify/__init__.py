"""`scanpay certify`: judge a target against the conformance catalogue.

- `runner`: runs the catalogue's scenarios against a target, one fresh context each, and
  decides every scenario's outcome.
- `scenarios/`: the catalogue itself (`CATALOGUE`), the scenarios by area, and the context
  they work with; a scenario judges a partner only through the harness's clients.
- `preflight`: before any scenario, checks that the run can mean something, or says why not.
- `results`: what a run found, the one record every report is drawn from.
"""
