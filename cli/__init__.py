"""Command-line interface: one small module per subcommand, each a thin wrapper over `core`'s API."""
