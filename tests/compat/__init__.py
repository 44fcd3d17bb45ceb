"""A client of the original Django REST Framework + SimpleJWT backend, run through the gateway."""
