"""Each page's cached calls into core: plain arguments in, plain data (and cached chart specs) out."""
