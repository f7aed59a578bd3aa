"""Study drivers and report scripts; importable for their tests."""
