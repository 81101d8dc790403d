"""flashstream test suite."""
