"""Tests of the LLM providers."""
