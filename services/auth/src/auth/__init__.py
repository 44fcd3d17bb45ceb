"""The auth service: accounts, password hashing, signed tokens and user events."""
