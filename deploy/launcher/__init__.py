"""`python -m deploy.launcher`: the whole platform on one machine (what `make run` calls)."""
