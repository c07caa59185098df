"""How the harness talks to the systems it drives, one place per kind of caller.

`phone`: what a phone does with a QR's url on the Trustly that issued it (open it, pay, wait
for the payment's outcome). Every part of the harness that pays (certify's scenarios,
`scanpay flow`, the pytest plugin) waits for a payment through `phone.settle_payment`.
"""
