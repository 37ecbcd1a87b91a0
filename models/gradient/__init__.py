"""Social gradient and inverse intervention models: spec and model, effects, posterior predictive checks, plots."""
