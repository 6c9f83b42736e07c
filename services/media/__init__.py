"""Media: keep customers' files for good, transcribe voice notes, speak voice replies."""
