"""Infrastructure shared by every service: written once, imported, never copied."""
