"""Plain, typed tool functions over the stores. The acting user always arrives as a UserScope built
from the session, never as an argument a model fills in."""
