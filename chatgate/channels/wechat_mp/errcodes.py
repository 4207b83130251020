"""WeChat API errcodes: what each one means for us, and what the owner must do, in one place."""

from __future__ import annotations

from enum import StrEnum

from chatgate.errors import ChatgateError


class ErrorKind(StrEnum):
    """What to do about a failed WeChat API call."""

    TOKEN = "token"  # the access token is invalid or expired: refresh it, retry once
    TRANSIENT = "transient"  # WeChat busy, 5xx, network: back off and retry (bounded)
    RATE = "rate"  # the per-minute quota: nothing will work for a minute
    QUOTA = "quota"  # the daily quota: nothing will work until tomorrow
    IP = "ip"  # this server's IP may not call the API
    CREDENTIALS = "credentials"  # AppID or AppSecret wrong, missing or frozen
    FORBIDDEN = "forbidden"  # the account may not use this API (unverified)
    WINDOW = "window"  # the user last wrote over 48 h ago, or unfollowed
    CAP = "cap"  # the messages allowed per user message are used up
    TOO_LONG = "too_long"  # the content is too large for one message
    TYPING = "typing"  # the typing indicator cannot be shown now
    OTHER = "other"  # anything else: not retried


_KINDS: dict[int, ErrorKind] = {
    -1: ErrorKind.TRANSIENT,
    40001: ErrorKind.TOKEN,
    40014: ErrorKind.TOKEN,
    42001: ErrorKind.TOKEN,
    45011: ErrorKind.RATE,
    45009: ErrorKind.QUOTA,
    40164: ErrorKind.IP,
    89503: ErrorKind.IP,
    40013: ErrorKind.CREDENTIALS,
    40125: ErrorKind.CREDENTIALS,
    40243: ErrorKind.CREDENTIALS,
    41002: ErrorKind.CREDENTIALS,
    41004: ErrorKind.CREDENTIALS,
    48001: ErrorKind.FORBIDDEN,
    45015: ErrorKind.WINDOW,
    43004: ErrorKind.WINDOW,
    45047: ErrorKind.CAP,
    45002: ErrorKind.TOO_LONG,
    45072: ErrorKind.TYPING,
    45080: ErrorKind.TYPING,
    45081: ErrorKind.TYPING,
}

# What the owner must do; logged once per process for the kinds no retry can fix.
OWNER_ACTIONS: dict[ErrorKind, str] = {
    ErrorKind.IP: (
        "add this server's public IP address to the account's API IP whitelist "
        "(mp.weixin.qq.com → 设置与开发 → 基本配置 → IP白名单); a risky-IP warning (89503) "
        "needs the administrator's confirmation"
    ),
    ErrorKind.QUOTA: (
        "the daily quota of this API is used up until midnight (Beijing time); make sure no "
        "other program fetches tokens with this AppID, or reset the quota in the console "
        "(or with /cgi-bin/clear_quota, 10 times a month)"
    ),
    ErrorKind.CREDENTIALS: (
        "check CHATGATE_WECHAT_APPID and CHATGATE_WECHAT_SECRET against the console "
        "(设置与开发 → 基本配置); a frozen or reset AppSecret must be replaced"
    ),
    ErrorKind.FORBIDDEN: (
        "this account may not use the customer-service API (only verified accounts may); "
        "answers are given in replies instead — set CHATGATE_WECHAT_MODE=passive to stop trying"
    ),
    ErrorKind.RATE: "the API's per-minute quota is used up; WeChat accepts calls again in a minute",
}

# Codes whose errmsg WeChat words differently over time; ours are for log lines only.
_MEANINGS: dict[int, str] = {
    -1: "WeChat is busy",
    40001: "access token invalid or not the latest",
    40014: "access token invalid",
    42001: "access token expired",
    45009: "daily API quota reached",
    45011: "per-minute API quota reached",
    40164: "caller IP not in the whitelist",
    48001: "API not authorised for this account",
    45015: "outside the 48-hour window, or the user unfollowed",
    45047: "per-message sending quota used up",
    45002: "content too long",
}


def classify(errcode: int) -> ErrorKind:
    return _KINDS.get(errcode, ErrorKind.OTHER)


class WeChatAPIError(ChatgateError):
    """A WeChat API call failed. ``errcode`` is ``None`` when WeChat never answered in JSON
    (network error, timeout, HTTP 5xx): those are ``TRANSIENT``."""

    def __init__(self, path: str, errcode: int | None, errmsg: str) -> None:
        self.path = path
        self.errcode = errcode
        self.errmsg = errmsg
        self.kind = ErrorKind.TRANSIENT if errcode is None else classify(errcode)
        meaning = _MEANINGS.get(errcode, "") if errcode is not None else ""
        code = "no answer" if errcode is None else f"errcode {errcode}"
        detail = f"{meaning} ({errmsg})" if meaning else errmsg
        super().__init__(f"{path}: {code}: {detail}")

    @property
    def owner_action(self) -> str | None:
        """What the owner must do about this error, if it is theirs to fix."""
        return OWNER_ACTIONS.get(self.kind)
