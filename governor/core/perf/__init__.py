"""Performance and energy models per operating point, their features and fits, the profile file schema
and the sampling of the operating space that decides what to measure. Pure."""
