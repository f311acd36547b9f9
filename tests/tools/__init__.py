"""Scripts that write tests/fixtures/ (run by hand, from the repository root, as modules:
``python -m tests.tools.<name> --help``)."""
