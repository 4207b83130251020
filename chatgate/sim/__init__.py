"""Offline simulators of WeChat and an LLM. Imports nothing of chatgate: it speaks public HTTP only."""
