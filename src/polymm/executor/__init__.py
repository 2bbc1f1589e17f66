"""Execution and risk layer of trading-executor: CLOB gateway, order manager, risk limits and kill
switches, user channel, heartbeat dead-man switch and the execution journal."""
