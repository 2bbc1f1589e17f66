"""Tests of the local Polymarket CLOB against the real py-clob-client-v2."""
