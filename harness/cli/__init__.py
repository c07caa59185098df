"""The `scanpay` command line, a thin layer over functions the tests call too.

- `main`: the click group and the `flow` command (the console script `scanpay`).
- `certify`: the `certify` and `catalogue` commands.
- `serve`: builds both sims and serves them on sockets; `rotate`: keeps a served CMS's QR
  codes fresh; `load`: runs the Locust journeys headless.
"""
