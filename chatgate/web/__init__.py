"""Answer and history pages."""
