"""DingTalk (钉钉) robot: Stream and HTTP callback modes, webhook and OpenAPI replies, AI cards."""
