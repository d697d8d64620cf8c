"""Feeding other systems: IPFIX flow records (ipfix, sender, flows) and Prometheus metrics (metrics)."""
