"""The gemma-native command line, including its bench subcommand."""
