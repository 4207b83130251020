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
    arriving: str = "回答生成后会直接发给你，请稍候。"
    part_number: str = "({index}/{total}) "
    unsupported: str = "暂时只支持文字消息，请直接输入你的问题。"
    empty_question: str = "请输入你的问题。"

    # -- commands ({p} is the command prefix) ---------------------------------------------
    help_always: str = "直接发送文字或语音即可向 AI 提问。"
    help_command_mode: str = (
        "发送 {p}chatgpt（或「开始」）开启 AI 对话，{minutes} 分钟没有新消息会自动结束。"
    )
    help_commands: str = (
        "可用命令：\n"
        "{session}"
        "{p}new（{p}clear、清除、新对话）开始新对话，忘记之前的内容\n"
        "{p}history（历史）查看聊天记录\n"
        "{p}help（帮助）显示本说明\n"
        "回复「1」或「继续」读取未读完的回答"
    )
    help_session_commands: str = "{p}chatgpt（开始）开启 AI 对话\n{p}stop（结束）结束 AI 对话\n"
    context_reset: str = "好的，已开始新的对话，之前的内容不会再作为上下文。"
    unknown_command: str = "没有 {p}{name} 这个命令，发送 {p}help 查看可用命令。"
    history_link: str = "聊天记录：{link}"
    history_unavailable: str = "聊天记录页面尚未开通。"

    # -- AI sessions -----------------------------------------------------------------------
    session_started: str = (
        "AI 对话已开启，请直接发送问题。"
        "{minutes} 分钟没有新消息会自动结束，发送 {p}stop 可随时结束。"
    )
    session_stopped: str = "AI 对话已结束，发送 {p}chatgpt 可重新开启。"
    session_not_active: str = "当前没有进行中的 AI 对话，发送 {p}chatgpt 开启。"
    session_always_on: str = "AI 对话一直开着，直接发送问题即可；发送 {p}new 可开始新的对话。"
    session_hint: str = "发送 {p}chatgpt 开启 AI 对话，发送 {p}help 查看帮助。"

    # -- events ------------------------------------------------------------------------------
    welcome: str = "欢迎关注！直接发送文字即可与 AI 对话，发送 {p}help 查看可用命令。"
    welcome_command_mode: str = (
        "欢迎关注！发送 {p}chatgpt 开启 AI 对话，发送 {p}help 查看可用命令。"
    )

    # -- media -------------------------------------------------------------------------------
    unsupported_with_images: str = "暂时只支持文字和图片消息，请直接输入你的问题。"
    voice_unrecognized: str = "没能识别这条语音，请改用文字发送。"
    image_question: str = "请描述这张图片。"

    # -- moderation, limits, failures ---------------------------------------------------------
    refused: str = "抱歉，这个问题涉及不适宜讨论的内容，无法回答。"
    rate_limited: str = "提问太频繁了，请 {wait}后再试。"
    wait_seconds: str = "{n} 秒"
    wait_minutes: str = "{n} 分钟"
    wait_hours: str = "{n} 小时"
    internal_error: str = "抱歉，出了点问题，请稍后再试。"
