"""Pure PKI core: keys, names, CSR vetting, certificate profiles and issuance.

Nothing in this package imports Django, reads settings, looks at the clock or draws random
numbers on its own: callers pass those in, so every function is deterministic under test.
"""
