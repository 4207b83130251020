"""Model markdown renders to HTML that can neither run script nor load anything."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from chatgate.web.render import IMAGE_LABEL, render_markdown, sanitize

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<javascript:alert(1)>",
    "![x](javascript:alert(1))",
    '<iframe src="https://evil.example/"></iframe>',
    "<style>body{display:none}</style>",
    '<svg onload="alert(1)"></svg>',
    '<div style="background:url(https://evil.example/t.png)">x</div>',
    '[x](https://ok.example/ "title" onmouseover="alert(1)")',
    "<form action=https://evil.example><button>go</button></form>",
]


class Elements(HTMLParser):
    """Every element and attribute a browser would build from the HTML."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes += [(name, value or "") for name, value in attrs]


def attributes(html: str) -> list[tuple[str, str]]:
    return Elements(html).attributes


def tags(html: str) -> set[str]:
    return Elements(html).tags


@pytest.mark.parametrize("source", HOSTILE)
def test_hostile_markup_comes_out_inert(source: str) -> None:
    html = render_markdown(f"前文\n\n{source}\n\n后文")
    assert tags(html) <= {"p", "a"}
    for name, value in attributes(html):
        assert not name.lower().startswith("on")
        assert name != "style"
        if name in ("href", "src"):
            assert value.startswith(("http://", "https://", "mailto:")), value
    assert "后文" in html


def test_raw_html_is_shown_as_text() -> None:
    html = render_markdown("看 <script>alert('x')</script> 和 <img src=x onerror=alert(2)>")
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html


def test_links_keep_only_http_https_and_mailto_targets() -> None:
    html = render_markdown(
        "[a](https://a.example/x?y=1&z=2) [b](http://b.example) [c](mailto:c@d.example) "
        "[d](ftp://d.example) [e](/a/relative) [f](tel:123)"
    )
    hrefs = [v for k, v in attributes(html) if k == "href"]
    assert hrefs == ["https://a.example/x?y=1&z=2", "http://b.example", "mailto:c@d.example"]
    assert html.count("<a ") == 6  # the refused ones keep their text, without a target
    assert 'rel="noopener noreferrer nofollow"' in html


def test_images_become_links_and_load_nothing() -> None:
    html = render_markdown("![一张 *图*](https://img.example/p.png) ![](https://img.example/q.png)")
    assert "<img" not in html
    assert '<a class="image-link" href="https://img.example/p.png"' in html
    assert f"{IMAGE_LABEL} 一张 图</a>" in html
    assert f">{IMAGE_LABEL}</a>" in html


def test_code_blocks_keep_their_text_escaped() -> None:
    html = render_markdown("```python\nif a < b:\n    print('<b>')\n```")
    assert html == "<pre><code>if a &lt; b:\n    print('&lt;b&gt;')\n</code></pre>\n"


def test_tables_align_with_classes_not_styles() -> None:
    html = render_markdown("| a | b | c |\n|:--|--:|:-:|\n| 1 | 2 | 3 |")
    assert "style=" not in html
    assert '<th class="align-left">a</th>' in html
    assert '<td class="align-right">2</td>' in html
    assert '<td class="align-center">3</td>' in html


def test_common_markdown_survives() -> None:
    html = render_markdown(
        "## 标题\n\n**粗** *斜* ~~删~~ `code`\n\n> 引用\n\n3. 三\n4. 四\n\n- 甲\n- 乙\n\n---"
    )
    for tag in ("h2", "strong", "em", "s", "code", "blockquote", "ol", "ul", "li", "hr"):
        assert f"<{tag}" in html, tag
    assert '<ol start="3">' in html


def test_partial_markdown_while_streaming_renders() -> None:
    # An answer cut mid-stream: an open code fence, half a link.
    html = render_markdown("说明：\n\n```js\nconsole.log('<x>')\n\n[半个链接](https://a.exa")
    assert html.startswith("<p>说明：</p>\n<pre><code>")
    assert "&lt;x&gt;" in html


def test_empty_text_renders_nothing() -> None:
    assert render_markdown("") == ""


def test_sanitizer_alone_strips_what_the_renderer_would_never_emit() -> None:
    dirty = (
        '<p onclick="x()">a<script>evil()</script><img src="https://t.example/p.png">'
        '<a href="javascript:evil()">b</a><a href="/internal">c</a>'
        '<span style="color:red">d</span><code class="language-py">e</code></p>'
    )
    assert sanitize(dirty) == (
        '<p>a<a rel="noopener noreferrer nofollow">b</a>'
        '<a rel="noopener noreferrer nofollow">c</a>d<code>e</code></p>'
    )
