"""Bayesian latent class models of demand (issue 4: not yet built)."""
