"""Prometheus metrics of a region node, collected at the components' seams."""
