"""Monitoring of served traffic with TFDV: skew against training, drift between windows, and
the served predictions against the eval predictions (`python -m monitoring --help`)."""
