"""Test-wide settings."""

from hypothesis import settings

# Property tests judge correctness, not speed: on a loaded CI machine a slow example is not a failure.
settings.register_profile("mptcp-analyze", deadline=None)
settings.load_profile("mptcp-analyze")
