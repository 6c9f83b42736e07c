"""Keys and ciphers: the master key provider, and sealed boxes for secrets at rest."""
