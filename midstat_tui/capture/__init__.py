"""Packet sources: capture files (pcap, pcapng, gzip, standard input) and live interfaces, via pcapy-ng."""
