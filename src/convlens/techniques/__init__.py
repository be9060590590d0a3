"""One module per technique family; each technique is a function ``f(lens, x, ...) -> Result``."""
