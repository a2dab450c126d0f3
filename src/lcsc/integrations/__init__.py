"""Glue for common training frameworks (each module imports its framework when imported)."""
