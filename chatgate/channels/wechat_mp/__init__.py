"""WeChat Official Account (公众号) channel: signature, crypto, XML, windows, push (客服消息)."""
