"""The Frankfurt -> Amsterdam relay: wire format, mutual TLS, sender link and receiver."""
