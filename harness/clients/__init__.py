"""How the harness talks to the systems it drives: one client per service, and nothing else of
the harness speaks HTTP (tests/unit/test_harness_layout.py holds that).

- `cms`: the CMS, as TPAS (fundings, limits, with the target's credentials and paths) and as
  the EGM (meter, QR): the one client certify's scenarios, the preflight and the pytest plugin
  use (the plugin hands it to partners' tests as `scanpay_cms`). Scenarios that send bad or
  missing credentials on purpose do it through its raw methods (`post_funding_raw`,
  `read_egm_raw`).
- `phone`: what a phone does with a QR's url on the Trustly that issued it (open it, pay, wait
  for the payment's outcome); every part of the harness that pays waits through
  `phone.settle_payment`.
- `trustly`: Trustly's QR Code API as a CMS calls it (certify's scan scenarios; the plugin
  hands it, with the target's merchant, to partners' tests as `scanpay_trustly`).
- `control`: a sim's `/_sim` control API (clock, journal, hooks), one class for the CMS's and
  the harness's Trustly's alike.
- `http`: the HTTP library's types as the other packages name them, `open_client`, and the
  transport that joins in-process sims.

A reachability check is a method of the client of the system it checks
(`CmsApi.answers_at`, `CmsApi.egm_screen_at`, `TrustlyApi.answers_at`).
`scanpay flow` (`harness.flow`) calls the CMS through `cms` too, on sim_cms's paths
(`cms.ReferenceCms`), as it has a base URL rather than a certify target.
"""
