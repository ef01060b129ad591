"""Chart construction for each page: one module per page, one function per figure (data in, cached Vega-Lite spec out)."""
