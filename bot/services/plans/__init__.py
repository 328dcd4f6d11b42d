"""Executable plans: typed steps that are shown exactly as they run (see ``model``)."""
