"""Offline simulators of WeChat and an LLM; they import nothing of chatgate, only public HTTP."""
