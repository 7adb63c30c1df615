"""The one exception type the engine raises for bad user input.

The CLI and the web UI catch it and show its message as is: it always names the file, record,
field or key, and the allowed values, so a user can fix the input without reading a traceback.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """Bad config, data or model path. `problems` lists every problem found, not only the first."""

    def __init__(self, title: str, problems: list[str] | None = None, max_listed: int = 20):
        self.title = title
        self.problems = list(problems or [])
        lines = [title]
        for problem in self.problems[:max_listed]:
            lines.append(f"  - {problem}")
        hidden = len(self.problems) - max_listed
        if hidden > 0:
            lines.append(f"  ... and {hidden} more problem(s) ({len(self.problems)} in all)")
        super().__init__("\n".join(lines))
