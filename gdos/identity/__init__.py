"""Identity: CURVE key pairs, join tokens and the rules for reading them."""
