"""The suite's one seed switch: ``CSC_TEST_SEED_OFFSET`` (an integer, default 0).

Every seed the tests hand to the simulator, a sampler, an EM start, ``np.random.default_rng``
or a sub-sample goes through :func:`seed`, so one environment variable moves the whole
suite onto other random numbers::

    CSC_TEST_SEED_OFFSET=3 make test

A stochastic assertion must hold for every offset with probability at least 1 - 1/1000
when the code is right (see tests/README.md, "Stochastic assertions and seeds").
"""

from __future__ import annotations

import os


def _offset() -> int:
    raw = os.environ.get("CSC_TEST_SEED_OFFSET", "0").strip() or "0"
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"CSC_TEST_SEED_OFFSET={raw!r}: expected a non-negative integer") from None
    if value < 0:
        raise ValueError(f"CSC_TEST_SEED_OFFSET={raw!r}: expected a non-negative integer (seeds are >= 0)")
    return value


#: Added to every seed the suite uses.
OFFSET = _offset()


def seed(base: int) -> int:
    """``base`` shifted by the suite's offset: the seed a test actually uses."""
    return int(base) + OFFSET
