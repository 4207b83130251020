"""Every word the answer and history pages show, in one place (Chinese defaults)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PageTexts:
    """Page wording; templates and the page script (through data attributes) take it from here."""

    answer_title: str = "AI 回答"
    history_title: str = "对话记录"
    question_label: str = "你的问题"
    answer_label: str = "回答"
    thinking: str = "正在思考"
    writing: str = "正在回答"
    done: str = "已回答"
    failed: str = "回答未完成"
    waiting_hint: str = "回答生成后会自动显示在这里，不用刷新页面。"
    elapsed_running: str = "已用 {time}"
    elapsed_finished: str = "用时 {time}"
    seconds: str = "{s} 秒"
    minutes: str = "{m} 分 {s} 秒"
    reconnecting: str = "连接中断，正在重试…"
    gone: str = "这个链接已失效。"
    private_note: str = "这个链接只给你本人，请不要转发。"
    older: str = "更早的消息"
    newest: str = "回到最新"
    no_history: str = "还没有对话记录。"
    pending_title: str = "正在生成的回答"
    open_answer: str = "查看"
    you: str = "我"
    assistant: str = "AI"

    def duration(self, seconds: float) -> str:
        """A duration as the pages write it: 「8 秒」, 「2 分 5 秒」."""
        whole = max(0, int(seconds))
        if whole < 60:
            return self.seconds.format(s=whole)
        return self.minutes.format(m=whole // 60, s=whole % 60)
