"""Recipes service: catalogue, ratings, full-text search and image intake."""
