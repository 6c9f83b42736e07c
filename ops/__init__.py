"""The operators' command-line tool, `python -m ops <command>`: the composition root that
wires the commands the services contribute. Only ops imports services; shared never does."""
