"""The core: messages, routing, answer jobs and delivery. No XML, no HTTP, no web framework."""
