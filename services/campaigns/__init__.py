"""The campaigns service: runs the campaigns the api records (see __main__.py)."""
