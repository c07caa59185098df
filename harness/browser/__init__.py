"""`scanpay flow --browser`: one scan-then-pay done by a real, headless Chromium.

- `chromium`: starts the machine's Chromium and driver, plays a phone, reads QR codes.
- `flow`: the steps, one method each, as a player and an EGM screen would see them.
- `command`: the command's side: sims on sockets, the browser, rich output, exit code.

Nothing outside this package imports Selenium.
"""
