"""The player's microsite: the pages a phone opens from the QR, and their JSON twin.

`views.bp` (blueprint `microsite`) serves the HTML pages under `/scan/<code>` and
`/payments/<paymentId>`; `api.bp` (blueprint `microsite_api`) serves the same steps as JSON
under `/api/v1` for headless drivers. Both are thin: they parse, call one `tpas` function and
render; the rules live in `sim_trustly.tpas.state_machine`.
"""
