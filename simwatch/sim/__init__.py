"""The simulated fleet: generator, fault scenarios, scoring against ground truth, demo."""
