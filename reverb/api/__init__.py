"""HTTP transport: parse, authenticate, call one service, serialise. No SQL, no rules."""
