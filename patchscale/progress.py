"""Formatting for progress lines."""


def format_duration(seconds: float) -> str:
    """12m05s, or 3h07m past an hour."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
