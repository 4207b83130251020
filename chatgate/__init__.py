"""chatgate: a gateway that puts an LLM behind a WeChat Official Account or a DingTalk bot."""

__version__ = "0.1.0"
