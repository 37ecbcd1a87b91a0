"""The joint model: latent demand class x social gradient x LA/LSOA effects in one posterior.

``simulate`` (compact episodes from the simulator's truth) -> ``data`` (pattern x cell x path
counts) -> ``model`` (PyMC, class marginalised) -> ``fit`` (EM start, sample, align labels)
-> ``effects`` (class gradients, contextual effects, the headline probability);
``threestep`` is the latent class -> modal class -> gradient model comparison.
"""
