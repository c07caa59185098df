"""How the harness talks to the systems it drives, one module per system.

- `cms`: the CMS, as TPAS (fundings, limits, with the target's credentials and paths) and as
  the EGM (meter, QR): the one client certify's scenarios, the preflight and the pytest plugin
  use (the plugin hands it to partners' tests as `scanpay_cms`).
- `phone`: what a phone does with a QR's url on the Trustly that issued it (open it, pay, wait
  for the payment's outcome); every part of the harness that pays waits through
  `phone.settle_payment`.

`scanpay flow` (`harness.flow`) calls the CMS through `cms` too, on sim_cms's paths
(`cms.ReferenceCms`), as it has a base URL rather than a certify target.
"""
