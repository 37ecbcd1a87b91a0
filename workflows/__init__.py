"""Orchestration: ``python -m workflows <verb>`` composes the plain functions of :mod:`models`."""
