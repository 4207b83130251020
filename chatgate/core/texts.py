"""Every sentence the gateway itself says to a user, in one place (Chinese defaults)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Texts:
    """User-facing wording; channels and features take it from here, never inline literals."""

    thinking: str = "正在思考中，请稍后回复「1」获取回答。"
    thinking_with_link: str = "正在思考中，请稍后回复「1」获取回答，或打开链接查看：{link}"
    still_thinking: str = "回答还在生成中，请稍后再回复「1」。"
    more: str = "\n\n（回复1继续）"
    more_with_link: str = "\n\n（回复1继续，或查看全文：{link}）"
    nothing_pending: str = "没有待领取的回答。直接输入问题即可开始对话。"
    pending_notice: str = "\n\n（你还有一条未读的回答，回复1查看）"
    unsupported: str = "暂时只支持文字消息，请直接输入你的问题。"
    empty_question: str = "请输入你的问题。"
