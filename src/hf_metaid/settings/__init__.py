"""Settings dataclasses whose fields describe themselves once for validation, documentation and the command line."""
