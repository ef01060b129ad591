"""Each page's measured facts put into words, decided by the numbers so they hold at every setting."""
