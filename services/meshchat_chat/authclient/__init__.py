"""The chat service's clients of the auth service: authenticating callers and looking up users."""
