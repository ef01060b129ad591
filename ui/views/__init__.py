"""Each page's cached calls into core: plain arguments in, plain data (tables, numbers, chart specs) out."""
