"""TEST-ONLY: sim_cms with defects planted on purpose, to show the conformance catalogue has teeth.

A partner CMS that gets idempotency, limits, rotation or EGM states wrong must fail
`scanpay certify`; this package is such a CMS, built from the product with test-only
replacements so the product keeps no test branches. Each defect is switched on by name
(`SCANPAY_BROKEN_DEFECTS=no-idempotency,limit-no-lock,...`, see `defects`); with none it is
sim_cms exactly as shipped. Never import this outside tests.
"""
