"""Development-only tooling shared by the tests and the benchmarks (never imported by the product).

stack.py runs a real deployment in a temp dir (workers, gunicorn) on the embedded broker or on
PostgreSQL + Redis; driver.py runs inside such a stack; bundlecase.py is the case study's scenario
as bundle specs. Data files stay under tests/fixtures.
"""
