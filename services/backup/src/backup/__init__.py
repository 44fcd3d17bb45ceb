"""Backup service: a weekly user-data CSV you can trust."""
