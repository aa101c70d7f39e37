"""The bodies of the CLI's commands, one module per command group; ``bench/cli.py`` only parses and
dispatches. A command may import anything below it in the flow; nothing below imports a command."""
