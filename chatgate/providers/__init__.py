"""LLM providers: each streams text chunks for a list of chat messages."""
