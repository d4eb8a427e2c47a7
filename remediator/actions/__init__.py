"""Action kinds: one module per kind, all behind the `Action` protocol of `base`."""
