"""Helpers for the end-to-end suite: the broker under test, paho clients,
Debian's mosquitto command-line clients, and a raw socket client that can
send bytes no well-behaved library would."""
