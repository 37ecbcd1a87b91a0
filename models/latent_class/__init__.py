"""Bayesian latent class models of demand.

``patterns`` (episodes to weighted unique patterns) -> ``em`` (multi-start EM: starting
values, posterior mode) -> ``model`` (PyMC, class marginalised) -> ``fit`` (sample, align)
-> ``labels`` (label switching, multimodality) -> ``profiles`` (intervals, memberships,
names); ``agreement`` compares with a known solution.
"""
