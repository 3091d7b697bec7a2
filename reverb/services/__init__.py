"""The rules: who may do what. The only code that writes data or publishes events."""
