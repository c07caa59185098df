"""What a CMS vendor's own CI gets from the installed package.

- `pytest_plugin`: the pytest plugin (registered through the `pytest11` entry point) and its
  fixtures.
- `kit`: what those fixtures hand to a partner's tests: clean state, flows, the CMS client.
- `strategies`: Hypothesis strategies for a partner's own property tests.
"""
