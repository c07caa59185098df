"""The reports of a certification run, all drawn from one `harness.certify.results.RunResult`.

- `writers`: writes every report (`report.json`, `report.txt` and the formats below) and
  prints the console summary.
- `junit`: `junit.xml` for CI systems; `html`: `report.html` (its template in `templates/`),
  with each scenario's message sequence drawn by `svg`.
- `text`: the plain-text wording the formats share.
"""
