"""The observed message sequence: who called whom, rebuilt from both sims' journals.

- `messages`: reads the journals and merges them into numbered lines (`scanpay flow`, the
  reports).
- `recorder`: cuts each certify scenario's (or plugin flow's) sequence from the journals.
- `faults`: how a line words an injected fault and what the caller saw.
"""
