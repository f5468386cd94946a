"""E-mail adapters: parsing, the SMTP server, composing replies."""
