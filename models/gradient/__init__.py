"""Social gradient and inverse intervention models (issue 3: not yet built)."""
