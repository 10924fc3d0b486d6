"""Command-line interface: one Typer app, one module per subcommand group."""
