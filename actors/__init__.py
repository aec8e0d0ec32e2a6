"""The actor side of theater: the message-server host API and example actors."""
