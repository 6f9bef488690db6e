"""Test helpers shared by the test modules (import as ``from helpers import pcapgen``)."""
