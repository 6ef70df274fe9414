"""One module per ``spectune`` subcommand: NAME, HELP, add_arguments, run (see ``runner.cli``)."""
