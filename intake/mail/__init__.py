"""E-mail adapters: parsing, the SMTP server, the IMAP poller."""
