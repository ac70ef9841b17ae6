"""The Markdown writer, the HTML page rendered from it, and the index and label summaries that use it."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from moclip.label.counts import LabelCounts
from moclip.report import RANDOM_CLIP_WARNING
from moclip.report import markdown as md
from moclip.report.index_summary import IndexSummary, to_markdown
from moclip.report.label_summary import distribution_markdown
from moclip.report.page import render_page

EVIL = "<script>alert(1)</script>"


def cells(row_html: str) -> list[str]:
    return re.findall(r"<td[^>]*>(.*?)</td>", row_html)


def test_inline_escaping() -> None:
    assert md.inline("a|b\nc <b> & *x* [l](u) #1 \\") == "a\\|b c &lt;b&gt; &amp; \\*x\\* \\[l\\](u) \\#1 \\\\"
    assert md.inline(md.code("a|b")) == "`a|b`"  # Markdown is not escaped again
    assert md.code("a `b` c") == "``a `b` c``" and md.code("`x") == "`` `x ``"


def test_table_cells_keep_their_columns() -> None:
    table = md.table(["class", "ids"], [[f"{EVIL}a|b", md.join([md.code("x|y"), md.code("z")], ", ")]])
    assert table.splitlines()[2] == "| &lt;script&gt;alert(1)&lt;/script&gt;a\\|b | `x\\|y`, `z` |"
    page = render_page(table, "t")
    assert cells(page) == ["&lt;script&gt;alert(1)&lt;/script&gt;a|b", "<code>x|y</code>, <code>z</code>"]
    assert "<script" not in page


def test_page_never_passes_raw_html() -> None:
    """Raw HTML in the Markdown itself (not only in escaped values) is shown, not interpreted."""
    page = render_page(f"# {EVIL}\n\n<img src=x onerror=alert(1)>\n\n<details>\n<summary>{EVIL}</summary>\n\n"
                       "text\n\n</details>\n", EVIL)
    assert "<script" not in page and "<img src=x" not in page
    assert "<title>&lt;script&gt;" in page and "<summary>&lt;script&gt;alert(1)&lt;/script&gt;</summary>" in page
    assert re.search(r"<details>\n<summary>.*</summary>\n<p>text</p>\n</details>", page)


def test_page_markup_and_images() -> None:
    doc = md.document([md.warning("careful"), md.note("small print"), md.paragraph(md.Md("plain *not a note*")),
                       md.paragraph("*escaped*"), md.image("cap <1>", "plots/a b.png"),
                       md.image("missing", "plots/none.png")])
    assert "![cap &lt;1&gt;](plots/a%20b.png)" in doc
    page = render_page(doc, "t", {"plots/a b.png": b"\x89PNG"})
    assert '<blockquote class="warn" role="alert">\n<p><strong>⚠ careful</strong></p>' in page
    assert '<p class="note"><em>small print</em></p>' in page and "<p>plain <em>not a note</em></p>" in page
    assert "<p>*escaped*</p>" in page
    assert ('<figure><img alt="cap &lt;1&gt;" src="data:image/png;base64,iVBORw=="><figcaption>cap &lt;1&gt;'
            "</figcaption></figure>") in page
    assert "none.png" not in page and "missing" not in page  # never a reference to another file


def index_summary(random: bool) -> IndexSummary:
    return IndexSummary(
        out="/data/f", corpus_videos=3, new=1, reindexed=0, unchanged=1, deleted=0, indexed_ok=1, failed=1,
        failures=[{"video_id": "a|b.mp4", "reason": f"bad | {EVIL}"}], crashed_shards=[], isolated_retries=[],
        bytes_written=10, frames_decoded=5, images_embedded=2, workers=["h:1"], changes={"new": ["n"]},
        worker_seconds={"decode_s": 1.0}, shard_timeline=[("h:1", 0.0, 1.0, 2)], wall_seconds=2.0,
        settings_hash="h", clip_weights_id="openai", clip_random_init=random)


@pytest.mark.parametrize("random", [True, False])
def test_summaries_share_the_random_warning(random: bool) -> None:
    preds = pd.DataFrame({"top1": ["A|B"], "top1_prob": [0.5], "mv_missing": [False]})
    for text in (to_markdown(index_summary(random)), distribution_markdown(LabelCounts.of(preds), False, random)):
        assert (RANDOM_CLIP_WARNING in text) is random and ("RANDOM" in text) is random
        if random:
            assert text.splitlines()[2] == f"> **⚠ {RANDOM_CLIP_WARNING}**"


def test_index_summary_escapes_its_tables() -> None:
    text = to_markdown(index_summary(False))
    assert "| `a\\|b.mp4` | bad \\| &lt;script&gt;alert(1)&lt;/script&gt; |" in text
    assert "worker seconds decode\\_s 1.0" in text and "- `n`" in text
    page = render_page(text, "index")
    assert "<td><code>a|b.mp4</code></td>\n<td>bad | &lt;script&gt;alert(1)&lt;/script&gt;</td>" in page
