"""One conversation format for every chat stage: the schema, the renderer, the SFT data."""
