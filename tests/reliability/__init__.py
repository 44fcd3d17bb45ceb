"""Platform-wide reliability suite: fuzzing, poison messages, faults under load, security."""
