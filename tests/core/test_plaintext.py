"""Markdown from the LLM becomes plain text a chat app shows well."""

from __future__ import annotations

import random

import pytest

from chatgate.core.plaintext import _rendered as rendered
from chatgate.core.plaintext import markdown_to_text, plain_text


@pytest.mark.parametrize(
    "text",
    [
        "你好！有什么可以帮你的吗？",
        "第一行\n第二行，带逗号、顿号。\n\n第二段：包含英文 English, 数字 3.14 和网址 https://example.com/a_b?x=1&y=2。",
        "It's 5 o'clock; see you at the café (room 2).",
        "价格：100元-200元 / 每人",
        "C:\\Users\\name\\file.txt",
        "#话题# 和 100% 的把握",
    ],
)
def test_plain_text_comes_out_unchanged(text: str) -> None:
    assert markdown_to_text(text) == text


def test_trailing_whitespace_is_removed() -> None:
    assert markdown_to_text("行尾有空格   \n下一行\n\n") == "行尾有空格\n下一行"


def test_empty_input_gives_empty_text() -> None:
    assert markdown_to_text("") == ""
    assert markdown_to_text("\n\n  \n") == ""


def test_headings_become_bracketed_lines() -> None:
    md = "# 总结\n\n正文。\n\n### Details\n更多内容。"
    assert markdown_to_text(md) == "【总结】\n\n正文。\n\n【Details】\n更多内容。"


def test_setext_heading_and_empty_heading() -> None:
    assert markdown_to_text("标题\n===\n\n#\n\n正文") == "【标题】\n\n正文"


def test_emphasis_and_code_markers_are_removed() -> None:
    md = "这是**重点**，这是*斜体*，这是`code`，还有~~删除~~和 __粗体__。"
    assert markdown_to_text(md) == "这是重点，这是斜体，这是code，还有删除和 粗体。"


def test_bold_ending_in_chinese_punctuation_loses_its_markers() -> None:
    md = "**注意：**请先保存，`**代码**`不变。\n\n1. **步骤一：**打开设置\n2. **“引用”**之后"
    assert markdown_to_text(md) == (
        "注意：请先保存，**代码**不变。\n\n1. 步骤一：打开设置\n2. “引用”之后"
    )


def test_double_underscores_inside_words_are_kept() -> None:
    assert markdown_to_text("变量 my__private__name 不变") == "变量 my__private__name 不变"


def test_backslash_escapes_show_the_character() -> None:
    assert markdown_to_text(r"1\*2 and \_x\_") == "1*2 and _x_"


def test_bullet_list() -> None:
    assert markdown_to_text("- 苹果\n- 香蕉\n* 橙子") == "• 苹果\n• 香蕉\n• 橙子"


def test_ordered_list_keeps_its_numbering() -> None:
    assert markdown_to_text("1. 第一步\n2. 第二步\n3. 第三步") == "1. 第一步\n2. 第二步\n3. 第三步"
    assert markdown_to_text("3. 三\n4. 四") == "3. 三\n4. 四"
    assert markdown_to_text("1. a\n1. b\n1. c") == "1. a\n2. b\n3. c"


def test_nested_lists_are_indented_under_their_item() -> None:
    md = "- 水果\n  - 苹果\n  - 香蕉\n- 蔬菜\n\n1. 准备\n   - 材料\n2. 开始"
    assert markdown_to_text(md) == (
        "• 水果\n  • 苹果\n  • 香蕉\n• 蔬菜\n\n1. 准备\n   • 材料\n2. 开始"
    )


def test_loose_list_keeps_its_blank_lines_and_continuation_indent() -> None:
    md = "- 第一项\n\n  补充说明\n\n- 第二项"
    assert markdown_to_text(md) == "• 第一项\n\n  补充说明\n\n• 第二项"


def test_list_right_under_its_lead_in_line_stays_there() -> None:
    assert markdown_to_text("步骤如下：\n1. 打开\n2. 关闭") == "步骤如下：\n1. 打开\n2. 关闭"


def test_links_show_text_and_url() -> None:
    assert markdown_to_text("见[官方文档](https://docs.example.com/a)。") == (
        "见官方文档 (https://docs.example.com/a)。"
    )


@pytest.mark.parametrize(
    "md",
    [
        "<https://example.com/x>",
        "[https://example.com/x](https://example.com/x)",
        "[](https://example.com/x)",
    ],
)
def test_link_whose_text_is_the_url_shows_the_url_once(md: str) -> None:
    assert markdown_to_text(md) == "https://example.com/x"


def test_email_autolink_shows_the_address() -> None:
    assert markdown_to_text("<me@example.com>") == "me@example.com"


def test_images_show_a_marker_and_the_url() -> None:
    md = '示意图：![架构图](https://img.example.com/a.png "title")'
    assert markdown_to_text(md) == "示意图：[图片] https://img.example.com/a.png"


def test_block_quotes_are_prefixed() -> None:
    md = "> 引用第一行\n> 第二行\n>\n> 第二段\n\n正文"
    assert markdown_to_text(md) == "> 引用第一行\n> 第二行\n>\n> 第二段\n\n正文"


def test_nested_quote_and_list_in_quote() -> None:
    assert markdown_to_text("> 外层\n>> 内层\n> - 项") == "> 外层\n> > 内层\n> • 项"


def test_fenced_code_is_kept_verbatim_without_fences() -> None:
    md = "示例：\n```python\ndef f(x):\n\n\n    return x * 2  # **not bold**\n```\n结束"
    assert markdown_to_text(md) == (
        "示例：\n\ndef f(x):\n\n\n    return x * 2  # **not bold**\n\n结束"
    )


def test_indented_code_is_kept_verbatim() -> None:
    assert (
        markdown_to_text("代码：\n\n    x = [1, 2]\n    y = *x\n") == "代码：\n\nx = [1, 2]\ny = *x"
    )


def test_code_in_a_list_item_is_indented_with_the_item() -> None:
    md = "1. 运行：\n\n   ```\n   make test\n   ```"
    assert markdown_to_text(md) == "1. 运行：\n\n   make test"


def test_tables_become_rows_of_cells() -> None:
    md = "| 名称 | 价格 | 备注 |\n|:---|---:|:-:|\n| 苹果 | 5 | **新鲜** |\n| 香蕉 | 3 | `a\\|b` |"
    assert markdown_to_text(md) == "名称 | 价格 | 备注\n苹果 | 5 | 新鲜\n香蕉 | 3 | a|b"


def test_horizontal_rule_becomes_a_line_of_dashes() -> None:
    assert markdown_to_text("上\n\n---\n\n下") == "上\n\n——————————\n\n下"
    assert markdown_to_text("***") == "——————————"


def test_html_is_shown_as_written() -> None:
    assert markdown_to_text("用 <b>粗体</b> 和 <br> 换行") == "用 <b>粗体</b> 和 <br> 换行"
    assert markdown_to_text("<div>\n  <p>块</p>\n</div>") == "<div>\n  <p>块</p>\n</div>"
    assert markdown_to_text("<script>alert(1)</script>") == "<script>alert(1)</script>"


def test_runs_of_blank_lines_collapse_to_one() -> None:
    assert markdown_to_text("一\n\n\n\n\n二\n\n\n三") == "一\n\n二\n\n三"


def test_hard_line_breaks_become_newlines() -> None:
    assert markdown_to_text("一行  \n两行\\\n三行") == "一行\n两行\n三行"


def test_realistic_llm_answer() -> None:
    md = """## Python 安装指南

你可以按以下**三个步骤**安装 Python：

1. 访问[官网](https://www.python.org/downloads/)下载安装包
2. 运行安装程序，勾选 *Add Python to PATH*
3. 打开终端验证：

   ```bash
   python --version
   ```

### 常见问题

| 问题 | 解决方法 |
|------|----------|
| 找不到命令 | 检查 `PATH` |
| 版本不对 | 使用 `py -3.12` |

> **提示**：推荐使用 3.12 或更高版本。



---
有问题随时问我！😊"""
    assert (
        markdown_to_text(md)
        == """【Python 安装指南】

你可以按以下三个步骤安装 Python：

1. 访问官网 (https://www.python.org/downloads/)下载安装包
2. 运行安装程序，勾选 Add Python to PATH
3. 打开终端验证：

   python --version

【常见问题】

问题 | 解决方法
找不到命令 | 检查 PATH
版本不对 | 使用 py -3.12

> 提示：推荐使用 3.12 或更高版本。

——————————
有问题随时问我！😊"""
    )


# What chat text without markdown is made of: CJK and Latin words, digits, the punctuation
# people type, spaces inside lines, line breaks and blank lines.
_PIECES = [
    *"你好世界回答问题模型中文",
    *"abcXYZ",
    *"0123456789",
    *"。，！？：；、.,?!:;'\"()（）%/@$",
    *[" ", "  ", "\n", "\n\n", "\n\n\n", " \n"],
    *["2024-01-01", "C#", "a-b", "1.5", "x=1", "→"],
]


def test_text_without_markdown_comes_out_as_the_parser_would_make_it() -> None:
    rng = random.Random(20261121)
    took_the_short_way = 0
    for _ in range(3000):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 60)))
        if plain_text(text):
            took_the_short_way += 1
        assert markdown_to_text(text) == rendered(text), repr(text)
    assert took_the_short_way > 1500  # the check passes ordinary text, not only the empty one


@pytest.mark.parametrize(
    "text",
    ["- item", "+ item", "1. one", "3) three", "# title", "> quoted", "title\n===", "a\n---",
     "    code", "\tcode", "a *b* c", "a _b_ c", "`code`", "[link](u)", "<b>x</b>", "&amp;",
     "a\\\nb", "a | b", "~~gone~~", "第一行\r\n第二行"],
)  # fmt: skip
def test_text_that_may_hold_markdown_is_parsed(text: str) -> None:
    assert not plain_text(text)
