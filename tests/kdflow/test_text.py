from rich.console import Console

from kdflow.text import markdown_code, markdown_inline, markdown_text, redact, safe


def test_names_print_as_themselves_through_rich():
    console = Console(record=True, width=200, color_system=None)
    escape = "red\x1b[31m"
    console.print(f"[bold]column:[/] {safe('price[/usd]')} and {safe('weight[kg]')} and {safe(escape)}")
    text = console.export_text()
    assert "price[/usd] and weight[kg] and red\\x1b[31m" in text and "\x1b" not in text


def test_markdown_cannot_be_broken_out_of():
    hostile = "x```\n# owned <script>alert(1)</script> *bold* [link](http://e.invalid)"
    block = markdown_code(hostile)
    fence = block.split("\n", 1)[0]
    assert set(fence) == {"`"} and len(fence) == 4 and block.endswith("\n" + fence)
    assert block.count(fence) == 2  # the content's three backticks cannot close a four-backtick fence
    inline = markdown_text(hostile)
    assert "<script>" not in inline and "\n" not in inline and "\\# owned" in inline and "\\*bold\\*" in inline
    assert markdown_inline("a`b") == "``a`b``"


def test_credentials_are_redacted_from_uris():
    assert redact("postgresql://kdflow:s3cret@db.internal:5432/mlflow") == "postgresql://kdflow:***@db.internal:5432/mlflow"
    assert (
        redact("http://user:pa:ss@host/api and https://host/x?token=abc&b=1")
        == "http://user:***@host/api and https://host/x?token=***&b=1"
    )
    assert redact("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
